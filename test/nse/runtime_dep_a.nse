-- Dependency target of runtime_dep_b: writes the registry after a delay.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: dependency A"
categories = {"safe"}

prerule = function() return true end

action = function()
  stdnse.sleep(0.2)
  nmap.registry.runtime_dep_a = "written by A"
  return "A done"
end
