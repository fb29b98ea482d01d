-- Never yields: only a runtime that can interrupt running Lua code stops it
-- (--script-timeout). Checked by run_runtime_tests.py (case "timeouts").
description = "nsefleet runtime test: busy loop timeout"
categories = {"safe"}

prerule = function() return true end

action = function()
  local n = 0
  while true do n = n + 1 end
end
