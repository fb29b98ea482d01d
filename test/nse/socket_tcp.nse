local nmap = require "nmap"
local stdnse = require "stdnse"

description = [[
nsefleet test: TCP socket methods against test/nse/servers.py (script-args tcp=, banner=,
closed=). Prints one line per check.
]]
categories = {"safe"}

prerule = function() return true end

-- One line per check: label, then each value (errors with the C function name blanked,
-- since nmap reports '?').
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
  local tcp = tonumber(stdnse.get_script_args("tcp"))
  local banner = tonumber(stdnse.get_script_args("banner"))
  local closed = tonumber(stdnse.get_script_args("closed"))

  -- misuse and unconnected sockets
  local s = nmap.new_socket()
  show("close unconnected", s:close())
  show("set_timeout -5", pcall(s.set_timeout, s, -5) == false)
  show("set_timeout 1500.7", s:set_timeout(1500.7))
  show("bad port table", pcall(s.connect, s, "127.0.0.1", {}))
  show("bind no port", pcall(s.bind, s, "127.0.0.1"))
  show("bind name", s:bind("nonexistent.invalid", 0))
  show("cert on plain", pcall(s.get_ssl_certificate, s))
  show("new sctp", pcall(nmap.new_socket, "sctp"))
  show("sleep -1", pcall(nmap.socket.sleep, -1))
  show("loop", (pcall(nmap.socket.loop, 10)))
  show("get_stats", nmap.socket.get_stats().connect_waiting)

  -- refused, then resolution failure
  show("connect refused", s:connect("127.0.0.1", closed))
  show("close after refused", s:close())
  show("connect bad name", s:connect("nonexistent.invalid", tcp))

  -- echo over a host table and a port table
  s = nmap.new_socket()
  show("connect table", s:connect({ip = "127.0.0.1", targetname = "localhost"},
                                  {number = tcp, protocol = "tcp"}))
  local st, lip, lport, rip, rport = s:get_info()
  show("get_info", st, lip, math.type(lport), rip, rport == tcp)
  show("send", s:send("hello\n"))
  show("receive_lines 1", s:receive_lines(1))
  show("send", s:send("0123456789"))
  show("receive_bytes 10", s:receive_bytes(10))

  -- receive_buf: pattern, keep / drop, the buffer carries over
  s:send("alpha\r\nbeta\r\ngamma;")
  show("receive_buf keep", s:receive_buf("\r\n", true))
  show("receive_buf drop", s:receive_buf("\r\n", false))
  show("receive_buf func", s:receive_buf(function(buf)
    local i = buf:find(";", 1, true)
    if i then return i, i end
  end, false))
  show("receive_buf bad keep", pcall(s.receive_buf, s, "x"))
  s:send("abc")
  show("receive_buf bad indices", pcall(s.receive_buf, s, function(buf) return 3, 2 end, true))

  -- ownership: another coroutine may not use a socket with pending/performed I/O
  local co = coroutine.create(function() return s:receive() end)
  show("reuse from coroutine", coroutine.resume(co))

  -- timeouts
  s:set_timeout(300)
  show("receive timeout", s:receive())
  s:send("xy")
  show("receive_bytes partial on timeout", s:receive_bytes(5))
  show("close", s:close())
  show("close again", s:close())
  show("send closed", pcall(s.send, s, "x"))
  show("receive closed", pcall(s.receive, s))
  show("get_info closed", pcall(s.get_info, s))

  -- EOF and partial data on EOF
  s = nmap.new_socket()
  show("connect banner", s:connect("127.0.0.1", banner))
  show("receive_lines 10 partial at EOF", s:receive_lines(10))
  show("receive after EOF", s:receive())
  s:close()
  s = nmap.new_socket()
  s:connect("127.0.0.1", banner)
  show("receive_buf", s:receive_buf("\n", false))
  show("receive_buf", s:receive_buf("\n", true))
  show("receive_buf at EOF", s:receive_buf("\n", true))
  s:close()

  -- bind to a local address before connecting
  s = nmap.new_socket()
  show("bind", s:bind("127.0.0.1", 0))
  show("connect bound", s:connect("127.0.0.1", tcp))
  st, lip = s:get_info()
  show("bound local ip", lip)
  s:close()

  -- IPv6 loopback: refused like IPv4
  s = nmap.new_socket("tcp", "inet6")
  show("inet6 connect refused", s:connect("::1", closed))
  s:close()

  -- sleep
  show("sleep results", select("#", nmap.socket.sleep(0.05)))
  return table.concat(out, "\n")
end
