-- Peer of runtime_hostport: shares host.registry with it on the same host.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: host.registry sharing"
categories = {"safe"}

hostrule = function() return true end

action = function(host)
  host.registry.hp_peer = "peer:" .. host.ip
  for _ = 1, 200 do
    if host.registry.hp_main then break end
    stdnse.sleep(0.01)
  end
  return "main saw " .. tostring(host.registry.hp_main)
end
