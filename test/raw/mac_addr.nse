-- Test script: reports host.mac_addr (as nmap's raw discovery fills it) in text form.
local stdnse = require "stdnse"

description = "test: host.mac_addr"
categories = {"safe"}

hostrule = function(host) return true end

action = function(host)
  if not host.mac_addr then return "no mac_addr" end
  return stdnse.format_mac(host.mac_addr)
end
