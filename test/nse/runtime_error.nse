-- An action that raises: "ERROR: Script execution failed (use -d to debug)" without -d,
-- no output and a traceback on stderr with -d. Checked by run_runtime_tests.py.
description = "nsefleet runtime test: action error"
categories = {"safe"}

hostrule = function() return true end

action = function()
  local t = {}
  t.x = 1
  error("deliberate runtime_error failure")
end
