-- Exercises the libssh2 binding directly against the test sshd (test/ssh2/run_ssh2_tests.py).
-- Script args: ssh2_api.user, ssh2_api.pass, ssh2_api.key (private key path; its public key
-- is <key>.pub), ssh2_api.badkey (a key the server does not know), ssh2_api.closed (a closed
-- port). The output is the same under nmap 7.93 and nsefleet.
local libssh2 = require "libssh2"
local shortport = require "shortport"
local stdnse = require "stdnse"
local table = require "table"

description = [[Calls every function of the libssh2 binding and reports the results.]]
categories = {"safe"}
author = "nsefleet tests"
license = "Same as Nmap--See https://nmap.org/book/man-legal.html"

portrule = shortport.port_or_service(22, "ssh")

local function arg(name) return stdnse.get_script_args("ssh2_api." .. name) end

local function pshow(ok, ...)
  local t = {tostring(ok)}
  for i = 1, select("#", ...) do t[#t + 1] = tostring((select(i, ...))) end
  return table.concat(t, " ")
end

local function show(v)
  if type(v) == "table" then return "{" .. table.concat(v, ",") .. "}" end
  return tostring(v)
end

action = function(host, port)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  local user, pass, key, badkey = arg("user"), arg("pass"), arg("key"), arg("badkey")

  local s = libssh2.session_open(host, port.number)
  add("session: %s", type(s))
  add("md5: %s", show(libssh2.hostkey_hash(s, "md5")))
  add("sha1: %s", show(libssh2.hostkey_hash(s, "sha1")))
  add("list: %s", show(libssh2.userauth_list(s, user)))
  add("bad password: %s", show(libssh2.userauth_password(s, user, "wrong-" .. pass)))
  add("good password: %s", show(libssh2.userauth_password(s, user, pass)))
  local ch = libssh2.open_channel(s)
  libssh2.channel_exec(s, ch, "echo hi; echo to-stderr >&2; printf 'a\\tb'")
  libssh2.channel_send_eof(s, ch)
  local buf, n = {}, 0
  while not libssh2.channel_eof(ch) and n < 1000 do
    n = n + 1
    local d = libssh2.channel_read(s, ch)
    if d then buf[#buf + 1] = d end
  end
  add("exec output: %q", table.concat(buf))
  add("eof: %s", show(libssh2.channel_eof(ch)))
  add("read at eof: %s", show(libssh2.channel_read(s, ch)))
  add("stderr at eof: %s", show(libssh2.channel_read_stderr(s, ch)))
  libssh2.channel_close(s, ch)
  -- A second channel on the same session, fed through channel_write.
  ch = libssh2.open_channel(s)
  libssh2.channel_exec(s, ch, "head -n 1")
  add("write: %s", show(libssh2.channel_write(s, ch, "hello\n")))
  libssh2.channel_send_eof(s, ch)
  buf, n = {}, 0
  while not libssh2.channel_eof(ch) and n < 1000 do
    n = n + 1
    local d = libssh2.channel_read(s, ch)
    if d then buf[#buf + 1] = d end
  end
  add("cat output: %q", table.concat(buf))
  libssh2.channel_close(s, ch)
  libssh2.session_close(s)

  local blob = libssh2.read_publickey(key .. ".pub")
  add("read_publickey: %d bytes, type %s", #blob, string.unpack(">s4", blob))
  local badblob = libssh2.read_publickey(badkey .. ".pub")
  add("read_publickey missing: %s", pshow(pcall(libssh2.read_publickey, key .. ".nonexistent")))

  s = libssh2.session_open(host, port.number)
  add("canauth good: %s", show(libssh2.publickey_canauth(s, user, blob)))
  libssh2.session_close(s)
  s = libssh2.session_open(host, port.number)
  add("canauth bad key: %s", show(libssh2.publickey_canauth(s, user, badblob)))
  libssh2.session_close(s)
  s = libssh2.session_open(host, port.number)
  add("canauth bad user: %s", show(libssh2.publickey_canauth(s, "nosuchuser", blob)))
  libssh2.session_close(s)

  s = libssh2.session_open(host, port.number)
  add("publickey bad: %s", show(libssh2.userauth_publickey(s, user, badkey, "")))
  add("publickey good: %s", show(libssh2.userauth_publickey(s, user, key, "")))
  libssh2.session_close(s)

  add("closed port: %s", pshow(pcall(libssh2.session_open, host, tonumber(arg("closed")))))
  return table.concat(out, "\n")
end
