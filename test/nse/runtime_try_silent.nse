-- An action that ends through a failing nmap.new_try produces no output at all
-- (run_runtime_tests.py checks the id is absent).
local nmap = require "nmap"

description = "nsefleet runtime test: new_try exit is silent"
categories = {"safe"}

hostrule = function() return true end

action = function()
  local try = nmap.new_try()
  try(false, "quiet exit")
  return "must not appear"
end
