-- nmap.condvar: LIFO signal, broadcast, and the wake-up when a thread that called
-- nmap.condvar(key) ends (normally or by error). Checked by run_runtime_tests.py.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: condition variables"
categories = {"safe"}

prerule = function() return true end

local function wait_until(pred, seconds)
  local deadline = nmap.clock() + (seconds or 5)
  while not pred() do
    if nmap.clock() > deadline then return false end
    stdnse.sleep(0.005)
  end
  return true
end

-- Workers use the closure obtained here, so only this (main) thread carries the
-- "broadcast when I end" guard and worker exits cause no extra wake-ups.
local function lifo(o)
  local cv = nmap.condvar("runtime_condvar.lifo")
  o.same_function = nmap.condvar("runtime_condvar.lifo") == cv
  local waiting, woken = 0, {}
  for i = 1, 3 do
    stdnse.new_thread(function()
      stdnse.sleep(0.07 * i)   -- fixes the order in which they start waiting
      waiting = waiting + 1
      cv("wait")
      woken[#woken + 1] = i
    end)
  end
  wait_until(function() return waiting == 3 end)
  stdnse.sleep(0.02)
  cv("signal")
  wait_until(function() return #woken >= 1 end)
  stdnse.sleep(0.02)
  o.after_first_signal = table.concat(woken, ",")
  cv("signal")
  wait_until(function() return #woken >= 2 end)
  stdnse.sleep(0.02)
  o.after_second_signal = table.concat(woken, ",")
  cv("broadcast")
  wait_until(function() return #woken >= 3 end)
  o.after_broadcast = table.concat(woken, ",")
  cv("signal")  -- nobody waiting: nothing happens
  local ok, e = pcall(cv, "bogus")
  o.bad_op = not ok and tostring(e):find("invalid option 'bogus'", 1, true) ~= nil
  local ok2, e2 = pcall(nmap.condvar, true)
  o.boolean_key_error = not ok2 and tostring(e2):find("object expected", 1, true) ~= nil
end

local function broadcast(o)
  local cv = nmap.condvar("runtime_condvar.all")
  local waiting, woken = 0, 0
  for _ = 1, 8 do
    stdnse.new_thread(function()
      waiting = waiting + 1
      cv("wait")
      woken = woken + 1
    end)
  end
  wait_until(function() return waiting == 8 end)
  stdnse.sleep(0.02)
  cv("broadcast")
  wait_until(function() return woken == 8 end)
  o.broadcast_woken = woken
end

-- The main thread waits on a condvar nobody signals; only the end of a worker that called
-- nmap.condvar(key) itself can wake it.
local function death(o, key, fail)
  local cv = nmap.condvar(key)
  local ended = false
  local _, status = stdnse.new_thread(function()
    nmap.condvar(key)
    stdnse.sleep(0.05)
    ended = true
    if fail then error("worker boom") end
  end)
  local t0 = nmap.clock()
  cv("wait")
  local st = status()
  return ended and st == "dead" and nmap.clock() - t0 < 5
end

action = function()
  local o = stdnse.output_table()
  lifo(o)
  broadcast(o)
  o.woken_by_worker_return = death(o, "runtime_condvar.death1", false)
  o.woken_by_worker_error = death(o, "runtime_condvar.death2", true)
  return o
end
