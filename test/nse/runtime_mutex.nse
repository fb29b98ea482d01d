-- nmap.mutex: contention, trylock, running, misuse, FIFO hand-over, release on thread death.
-- Checked by run_runtime_tests.py (case "mutex").
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: mutexes"
categories = {"safe"}

prerule = function() return true end

-- Waits (bounded) until pred() holds; returns whether it did.
local function wait_until(pred, seconds)
  local deadline = nmap.clock() + (seconds or 5)
  while not pred() do
    if nmap.clock() > deadline then return false end
    stdnse.sleep(0.005)
  end
  return true
end

local function contention(o)
  local m = nmap.mutex("runtime_mutex.counter")
  local N = 50
  local inside, max_inside, counter, finished = 0, 0, 0, 0
  for _ = 1, N do
    stdnse.new_thread(function()
      m("lock")
      inside = inside + 1
      if inside > max_inside then max_inside = inside end
      local before = counter
      stdnse.sleep(0.001)
      counter = before + 1
      inside = inside - 1
      m("done")
      finished = finished + 1
    end)
  end
  o.contention_finished = wait_until(function() return finished == N end, 10)
  o.contention_counter = counter
  o.contention_max_inside = max_inside
  o.contention_free_after = m("running") == nil
end

local function ownership(o)
  local m = nmap.mutex("runtime_mutex.own")
  o.same_function = nmap.mutex("runtime_mutex.own") == m
  local t1, t2 = {}, {}
  o.table_keys_distinct = nmap.mutex(t1) ~= nmap.mutex(t2)
  o.table_key_same = nmap.mutex(t1) == nmap.mutex(t1)
  local ok, e = pcall(nmap.mutex, 5)
  o.number_key_error = not ok and tostring(e):find("object expected", 1, true) ~= nil
  o.trylock_free = m("trylock")
  o.running_is_me = m("running") == coroutine.running()
  m("done")
  o.running_after_done = tostring((m("running")))
  o.running_after_done_nvals = select("#", m("running"))
  local ok2, e2 = pcall(m, "done")
  o.done_unlocked = ok2 and "no error" or tostring(e2)

  -- A worker takes the lock and holds it until told to release.
  local worker_co, release, holding, released = nil, false, false, false
  worker_co = stdnse.new_thread(function()
    m("lock")
    holding = true
    wait_until(function() return release end)
    m("done")
    released = true
  end)
  wait_until(function() return holding end)
  o.trylock_held = m("trylock")
  o.running_is_worker = m("running") == worker_co
  local ok3, e3 = pcall(m, "done")
  o.done_by_non_owner = ok3 and "no error" or tostring(e3)
  release = true
  wait_until(function() return released end)
  o.trylock_after_release = m("trylock")
  m("done")
end

local function fifo(o)
  local m = nmap.mutex("runtime_mutex.fifo")
  m("lock")
  local order, started, done = {}, 0, 0
  for i = 1, 5 do
    stdnse.new_thread(function()
      -- Staggered arrival fixes the queue order whatever order workers start in.
      stdnse.sleep(0.07 * i)
      started = started + 1
      m("lock")
      order[#order + 1] = i
      stdnse.sleep(0.002)
      m("done")
      done = done + 1
    end)
  end
  wait_until(function() return started == 5 end)
  stdnse.sleep(0.02)
  m("done")
  wait_until(function() return done == 5 end)
  o.fifo_order = table.concat(order, ",")
end

local function death(o)
  local m = nmap.mutex("runtime_mutex.death")
  -- Owner errors while holding the lock; the waiter must get it.
  local holding, got = false, false
  local _, status = stdnse.new_thread(function()
    m("lock")
    holding = true
    stdnse.sleep(0.05)
    error("holder boom")
  end)
  wait_until(function() return holding end)
  stdnse.new_thread(function()
    m("lock")
    got = true
    m("done")
  end)
  o.waiter_got_lock_after_error = wait_until(function() return got end, 5)
  local st, err = status()
  o.dead_holder_status = st
  o.dead_holder_error = err ~= nil and tostring(err):find("holder boom", 1, true) ~= nil

  -- Owner returns normally without "done".
  local m2 = nmap.mutex("runtime_mutex.death2")
  local fin = false
  stdnse.new_thread(function()
    m2("lock")
    fin = true
  end)
  wait_until(function() return fin end)
  stdnse.sleep(0.02)
  o.lock_free_after_return = m2("trylock")
  m2("done")
end

action = function()
  local o = stdnse.output_table()
  contention(o)
  ownership(o)
  fifo(o)
  death(o)
  return o
end
