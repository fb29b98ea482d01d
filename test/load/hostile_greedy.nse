-- Test script: asks a server that streams without end for 2,000,000,000 bytes (the engine's
-- memory cap must stop it with a soft failure, not grow the process or abort it).
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "load test: receive_bytes(2e9) from an endless stream"
categories = {"safe"}

portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("hostile.flood"))
end

action = function(host, port)
  local s = nmap.new_socket()
  s:set_timeout(60000)
  local ok, err = s:connect(host, port)
  if not ok then return "connect failed: " .. tostring(err) end
  local status, data = s:receive_bytes(2000000000)
  s:close()
  if not status then return "receive failed: " .. tostring(data) end
  return ("received %d bytes"):format(#data)
end
