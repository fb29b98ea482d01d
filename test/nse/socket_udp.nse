local nmap = require "nmap"
local stdnse = require "stdnse"

description = [[
nsefleet test: UDP socket methods against test/nse/servers.py (script-args udp=, closed=).
]]
categories = {"safe"}

prerule = function() return true end

local out = {}
local function show(label, ...)
  local t = table.pack(...)
  for i = 1, t.n do
    local v = t[i]
    if type(v) == "string" then
      v = v:gsub("^[^:\n]*:%d+: ", ""):gsub("to '[^']*'", "to '?'"):gsub("\r", "\\r"):gsub("\n", "\\n")
      t[i] = '"' .. v .. '"'
    else
      t[i] = tostring(v)
    end
  end
  out[#out + 1] = label .. ": " .. table.concat(t, " ", 1, t.n)
end

action = function()
  local port = tonumber(stdnse.get_script_args("udp"))

  -- connected UDP: the peer is fixed, receive returns exactly one datagram
  local s = nmap.new_socket("udp")
  s:set_timeout(500)
  show("connect", s:connect("127.0.0.1", port))
  local st, lip, lport, rip, rport = s:get_info()
  show("get_info", st, lip, math.type(lport), rip, rport == port)
  show("send 1", s:send("first"))
  show("send 2", s:send("second"))
  show("receive 1", s:receive())
  show("receive 2", s:receive())
  show("receive none", s:receive())
  s:send("abc")
  show("receive_bytes 2", s:receive_bytes(2))
  show("close", s:close())

  -- a UDP socket connected through a tcp socket's "how" argument and a port table
  s = nmap.new_socket()
  s:set_timeout(500)
  show("connect how=udp", s:connect({ip = "127.0.0.1"}, {number = port, protocol = "udp"}))
  s:send("via table")
  show("receive", s:receive())
  s:close()

  -- unconnected UDP: sendto, then receive the echo
  s = nmap.new_socket("udp")
  s:set_timeout(500)
  show("sendto", s:sendto("127.0.0.1", port, "datagram"))
  st, lip, lport, rip, rport = s:get_info()
  show("get_info after sendto", st, lip, math.type(lport), rip, rport == port)
  show("receive", s:receive())
  show("sendto table", s:sendto({ip = "127.0.0.1"}, {number = port}, "again"))
  show("receive", s:receive())
  show("sendto bad name", s:sendto("nonexistent.invalid", port, "x"))
  show("close", s:close())
  show("close again", s:close())

  -- IPv6 loopback when available (the echo server is IPv4 only: expect a timeout or error)
  s = nmap.new_socket("udp", "inet6")
  s:set_timeout(200)
  local ok = s:connect("::1", port)
  show("inet6 connect", ok)
  s:close()
  return table.concat(out, "\n")
end
