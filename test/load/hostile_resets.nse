-- Test script: 1000 connections at once (workers) to a server that resets every one; counts
-- the outcomes. Every connection must end (reset, EOF or refused), none may hang or crash.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "load test: a thousand resets"
categories = {"safe"}

portrule = function(host, port)
  return port.number == tonumber(stdnse.get_script_args("hostile.reset"))
end

action = function(host, port)
  local n = tonumber(stdnse.get_script_args("hostile.count")) or 1000
  local done, ended = 0, 0
  local cv = nmap.condvar("hostile.resets")
  local function one()
    local s = nmap.new_socket()
    s:set_timeout(10000)
    local ok = s:connect(host, port)
    if ok then
      s:send("x")
      s:receive()
    end
    s:close()
    ended = ended + 1
    done = done + 1
    cv "signal"
  end
  for _ = 1, n do stdnse.new_thread(one) end
  while done < n do cv "wait" end
  return ("%d of %d connections ended"):format(ended, n)
end
