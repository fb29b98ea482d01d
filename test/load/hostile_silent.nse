-- Test script: a server that accepts and never answers; the script's own timeout ends it.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "load test: silent server"
categories = {"safe"}

portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("hostile.silent"))
end

action = function(host, port)
  local s = nmap.new_socket()
  s:set_timeout(2000)
  local ok, err = s:connect(host, port)
  if not ok then return "connect failed: " .. tostring(err) end
  local status, data = s:receive()
  s:close()
  return "receive: " .. tostring(status) .. " " .. tostring(data)
end
