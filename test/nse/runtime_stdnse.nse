-- stdnse members injected by the driver: new_thread (+ status function), base, gettid,
-- getid, getinfo, gethostport, isworker. Checked by run_runtime_tests.py (case "stdnse").
-- Script arg rt_p1: an open TCP port scanned with -p.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: stdnse injections"
categories = {"safe"}

prerule = function() return true end
portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("rt_p1"))
end

local function wait_until(pred, seconds)
  local deadline = nmap.clock() + (seconds or 5)
  while not pred() do
    if nmap.clock() > deadline then return false end
    stdnse.sleep(0.005)
  end
  return true
end

local function common(o)
  local me = coroutine.running()
  o.base_is_running = stdnse.base() == me
  o.gettid_is_running = stdnse.gettid() == tostring(me)
  o.getid = tostring(stdnse.getid())
  o.getinfo_main = stdnse.getinfo():match("^runtime_stdnse M:%x+$") ~= nil
  o.isworker_main = stdnse.isworker()

  local w = {}
  local co, status = stdnse.new_thread(function(a, b)
    w.args = tostring(a) .. "," .. tostring(b)
    w.base_is_self = stdnse.base() == coroutine.running()
    w.gettid_is_parent = stdnse.gettid() == tostring(me)
    w.getid = stdnse.getid()
    w.getinfo = stdnse.getinfo()
    w.isworker = stdnse.isworker()
    w.hp = {stdnse.gethostport()}
    stdnse.sleep(0.01)
    w.done = true
    return "ignored"
  end, "x", 7)
  o.new_thread_returns_coroutine = type(co) == "thread"
  o.status_before = (status())
  wait_until(function() return w.done end)
  stdnse.sleep(0.01)
  local st, err = status()
  o.status_ok = tostring(st) .. "," .. tostring(err)
  o.worker_args = w.args
  o.worker_base_is_self = w.base_is_self
  o.worker_gettid_is_parent = w.gettid_is_parent
  o.worker_getid = tostring(w.getid)
  o.worker_getinfo = tostring(w.getinfo):match("^runtime_stdnse W:%x+$") ~= nil
  o.worker_isworker = w.isworker

  local _, status2 = stdnse.new_thread(function() error("worker boom") end)
  wait_until(function() return (status2()) == "dead" end)
  local st2, err2 = status2()
  o.status_error = tostring(st2) .. "," .. tostring(tostring(err2):find("worker boom", 1, true) ~= nil)

  local ok, e = pcall(stdnse.new_thread, "not a function")
  o.new_thread_bad_arg = not ok and tostring(e):find("function expected", 1, true) ~= nil
  return w
end

action = function(host, port)
  local o = stdnse.output_table()
  o.type = SCRIPT_TYPE
  local w = common(o)
  if SCRIPT_TYPE == "prerule" then
    o.gethostport_count = select("#", stdnse.gethostport())
    o.gethostport_host = tostring((stdnse.gethostport()))
    o.worker_gethostport_host = tostring(w.hp[1])
  else
    local h, p = stdnse.gethostport()
    o.host_original_differs = h ~= host
    o.port_original_differs = p ~= port
    o.host_ip = h.ip
    o.port_number_matches = p.number == port.number
    o.registry_shared = h.registry == host.registry
    o.worker_gets_originals = w.hp[1] == h and w.hp[2] == p
  end
  return o
end
