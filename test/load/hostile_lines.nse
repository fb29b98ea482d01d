-- Test script: receive_lines(1) from a server that sends one endless line.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "load test: receive_lines on an endless line"
categories = {"safe"}

portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("hostile.line"))
end

action = function(host, port)
  local s = nmap.new_socket()
  s:set_timeout(60000)
  local ok, err = s:connect(host, port)
  if not ok then return "connect failed: " .. tostring(err) end
  local status, data = s:receive_lines(1)
  s:close()
  if not status then return "receive failed: " .. tostring(data) end
  return ("received %d bytes"):format(#data)
end
