-- nmap.new_try: pass-through, handler then the {errtype="nmap.new_try"} error, non-boolean
-- first arguments, a yielding handler. Checked by run_runtime_tests.py (case "try").
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: new_try"
categories = {"safe"}

prerule = function() return true end

action = function()
  local o = stdnse.output_table()
  local try = nmap.new_try()
  local a, b = try(true, 1, 2)
  o.true_values = tostring(a) .. "," .. tostring(b)
  o.true_count = select("#", try(true, 1, nil, 3))
  o.true_only_count = select("#", try(true))

  local called = 0
  local try2 = nmap.new_try(function(...)
    called = called + 1
    o.handler_nargs = select("#", ...)
  end)
  local ok, e = pcall(try2, false, "the message")
  o.false_ok = ok
  o.false_err_type = type(e)
  o.false_errtype = type(e) == "table" and tostring(e.errtype) or "-"
  o.false_message = type(e) == "table" and tostring(e.message) or "-"
  o.handler_calls = called

  local ok2, e2 = pcall(try2, nil, "nil first")
  o.nil_ok = ok2
  o.nil_errtype = type(e2) == "table" and tostring(e2.errtype) or "-"
  o.handler_calls_after_nil = called

  local ok3, e3 = pcall(try, false)
  o.no_message_ok = ok3
  o.no_message = type(e3) == "table" and tostring(e3.message) or "-"

  -- Non-boolean first argument: treated as success (with a warning on stderr).
  local v = try("s", 5)
  o.string_first = tostring(v)

  -- A handler may block.
  local slept = false
  local try3 = nmap.new_try(function()
    stdnse.sleep(0.01)
    slept = true
  end)
  local ok4, e4 = pcall(try3, false, "after sleep")
  o.yielding_handler_ran = slept
  o.yielding_handler_message = type(e4) == "table" and tostring(e4.message) or tostring(e4)
  o.yielding_handler_ok = ok4
  return o
end
