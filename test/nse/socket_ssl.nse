local nmap = require "nmap"
local stdnse = require "stdnse"

description = [[
nsefleet test: TLS sockets (connect "ssl", get_ssl_certificate) and STARTTLS
(reconnect_ssl) against test/nse/servers.py (script-args tls=, starttls=, tcp=).
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
  local tls = tonumber(stdnse.get_script_args("tls"))
  local starttls = tonumber(stdnse.get_script_args("starttls"))
  local tcp = tonumber(stdnse.get_script_args("tcp"))

  local s = nmap.new_socket()
  s:set_timeout(5000)
  show("connect ssl", s:connect({ip = "127.0.0.1", targetname = "localhost"}, tls, "ssl"))
  show("send", s:send("over tls\n"))
  show("receive_buf", s:receive_buf("\n", true))
  s:send("0123456789")
  show("receive_bytes", s:receive_bytes(10))
  local cert = s:get_ssl_certificate()
  show("cert type", type(cert))
  show("cert subject", cert and cert.subject and cert.subject.commonName)
  show("cert org", cert and cert.subject and cert.subject.organizationName)
  show("cert issuer", cert and cert.issuer and cert.issuer.commonName)
  show("cert pubkey", cert and cert.pubkey and cert.pubkey.type, cert and cert.pubkey and cert.pubkey.bits)
  show("cert pem", cert and cert.pem and cert.pem:match("^%-%-%-%-%-BEGIN CERTIFICATE") ~= nil)
  show("cert sha1 len", cert and #cert:digest("sha1"))
  show("close", s:close())
  show("cert after close", pcall(s.get_ssl_certificate, s))

  -- TLS to a plain echo server fails
  s = nmap.new_socket()
  s:set_timeout(2000)
  show("connect ssl to plain", s:connect("127.0.0.1", tcp, "ssl"))
  s:close()

  -- STARTTLS: plain exchange, then upgrade the same connection
  s = nmap.new_socket()
  s:set_timeout(5000)
  show("connect plain", s:connect("127.0.0.1", starttls))
  show("cert before upgrade", pcall(s.get_ssl_certificate, s))
  s:send("STARTTLS\r\n")
  show("answer", s:receive_buf("\r\n", false))
  show("reconnect_ssl", s:reconnect_ssl())
  show("send", s:send("upgraded\n"))
  show("receive_lines", s:receive_lines(1))
  cert = s:get_ssl_certificate()
  show("cert subject", cert and cert.subject.commonName)
  local st, lip, lport, rip, rport = s:get_info()
  show("get_info", st, lip, rip, rport == starttls)
  show("close", s:close())

  -- reconnect_ssl on a closed socket
  show("reconnect_ssl closed", pcall(s.reconnect_ssl, s))
  return table.concat(out, "\n")
end
