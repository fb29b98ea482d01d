-- Test script: reads a small zlib stream that inflates to far more than the memory cap,
-- then decompresses it, once in one shot and once through a read stream.
local nmap = require "nmap"
local stdnse = require "stdnse"
local zlib = require "zlib"

description = "load test: zlib bomb"
categories = {"safe"}

portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("hostile.bomb"))
end

action = function(host, port)
  local s = nmap.new_socket()
  s:set_timeout(20000)
  local ok, err = s:connect(host, port)
  if not ok then return "connect failed: " .. tostring(err) end
  local parts = {}
  while true do
    local status, data = s:receive()
    if not status then break end
    parts[#parts + 1] = data
  end
  s:close()
  local blob = table.concat(parts)
  local out = {}
  local ok1, r1 = pcall(zlib.decompress, blob)
  out[#out + 1] = ok1 and ("one-shot: %d bytes"):format(#r1) or ("one-shot failed: " .. tostring(r1))
  local ok2, r2 = pcall(function()
    local stream = zlib.inflate(blob)
    return stream:read("*a")
  end)
  out[#out + 1] = ok2 and ("stream: %d bytes"):format(#r2) or ("stream failed: " .. tostring(r2))
  return ("compressed %d bytes; %s; %s"):format(#blob, out[1], out[2])
end
