-- User coroutines inside a script that block (sleep, mutex, condvar) still work: the
-- runtime forwards its yield through them. Checked by run_runtime_tests.py.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: coroutines inside scripts"
categories = {"safe"}

prerule = function() return true end

action = function()
  local o = stdnse.output_table()

  -- wrap: blocking calls between user yields.
  local gen = coroutine.wrap(function(x)
    stdnse.sleep(0.01)
    local y = coroutine.yield("first:" .. x)
    stdnse.sleep(0.01)
    coroutine.yield("second:" .. y)
    return "last"
  end)
  o.wrap_values = table.concat({gen("a"), gen("b"), gen()}, ",")

  -- create/resume with values passed both ways and a sleep that must really wait.
  local co = coroutine.create(function(n)
    local t0 = nmap.clock()
    stdnse.sleep(0.2)
    local elapsed = nmap.clock() - t0
    local m = coroutine.yield(n + 1, elapsed >= 0.15)
    stdnse.sleep(0.005)
    return m * 2
  end)
  local ok1, v1, waited = coroutine.resume(co, 1)
  local ok2, v2 = coroutine.resume(co, 5)
  o.resume_values = table.concat({tostring(ok1), tostring(v1), tostring(ok2), tostring(v2)}, ",")
  o.resume_sleep_waited = waited
  o.resume_status_end = coroutine.status(co)

  -- Two levels of nesting.
  local outer = coroutine.wrap(function()
    local inner = coroutine.wrap(function()
      stdnse.sleep(0.005)
      coroutine.yield("inner")
      return "inner-done"
    end)
    local a = inner()
    stdnse.sleep(0.005)
    coroutine.yield(a)
    return inner()
  end)
  o.nested = outer() .. "," .. outer()

  -- A mutex taken inside a coroutine is owned by that coroutine.
  local m = nmap.mutex("runtime_coroutine")
  local holder = coroutine.create(function()
    m("lock")
    coroutine.yield(m("running") == coroutine.running())
    m("done")
  end)
  local _, owner_is_inner = coroutine.resume(holder)
  o.mutex_owner_is_inner = owner_is_inner
  local ok3, e3 = pcall(m, "done")
  o.mutex_done_by_outer = ok3 and "no error" or tostring(e3)
  coroutine.resume(holder)
  o.mutex_released = m("trylock")
  m("done")

  -- Errors raised after a blocking call propagate through wrap.
  local bad = coroutine.wrap(function()
    stdnse.sleep(0.005)
    error("inner failure", 0)
  end)
  local ok4, e4 = pcall(bad)
  o.wrap_error = tostring(ok4) .. "," .. tostring(e4)
  return o
end
