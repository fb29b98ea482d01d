-- Depends on runtime_dep_a: must run after it and see its registry write.
local nmap = require "nmap"

description = "nsefleet runtime test: dependency B"
categories = {"safe"}
dependencies = {"runtime_dep_a"}

prerule = function() return true end

action = function()
  return "B saw " .. tostring(nmap.registry.runtime_dep_a)
end
