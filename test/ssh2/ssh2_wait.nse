-- Waiting in the libssh2 binding (test/ssh2/run_ssh2_tests.py): a read that outlives
-- set_timeout raises "TIMEOUT", and a thread waiting on a slow command does not hold up
-- another thread's SSH work, and a session left open by a finished thread is closed. Script args: ssh2_wait.user, ssh2_wait.pass.
local libssh2 = require "libssh2"
local nmap = require "nmap"
local shortport = require "shortport"
local stdnse = require "stdnse"
local table = require "table"

description = [[Checks timeouts and concurrency of the libssh2 binding.]]
categories = {"safe"}
author = "nsefleet tests"
license = "Same as Nmap--See https://nmap.org/book/man-legal.html"

portrule = shortport.port_or_service(22, "ssh")

local function login(host, port)
  local s = libssh2.session_open(host, port.number)
  assert(libssh2.userauth_password(s, stdnse.get_script_args("ssh2_wait.user"),
                                   stdnse.get_script_args("ssh2_wait.pass")))
  return s
end

-- Runs cmd and reads until EOF; returns the output.
local function run(s, cmd)
  local ch = libssh2.open_channel(s)
  libssh2.channel_exec(s, ch, cmd)
  libssh2.channel_send_eof(s, ch)
  local buf, n = {}, 0
  while not libssh2.channel_eof(ch) and n < 1000 do
    n = n + 1
    buf[#buf + 1] = libssh2.channel_read(s, ch)
  end
  return table.concat(buf)
end

action = function(host, port)
  local out = {}
  -- 1. timeout
  local s = login(host, port)
  libssh2.set_timeout(s, 500)
  local ch = libssh2.open_channel(s)
  libssh2.channel_exec(s, ch, "sleep 3")
  local t0 = nmap.clock_ms()
  local ok, err = pcall(libssh2.channel_read, s, ch)
  local dt = nmap.clock_ms() - t0
  out[#out + 1] = ("slow read: %s %s, within 2s: %s"):format(ok, err, dt < 2000)
  pcall(libssh2.session_close, s)

  -- 2. concurrency: a worker's quick session completes while the main thread waits 2 s.
  local t_start = nmap.clock_ms()
  local worker_done
  local co = stdnse.new_thread(function()
    local w = login(host, port)
    local r = run(w, "echo quick")
    worker_done = nmap.clock_ms() - t_start
    libssh2.session_close(w)
    return r
  end)
  s = login(host, port)
  local slow = run(s, "sleep 2; echo slow")
  local main_done = nmap.clock_ms() - t_start
  libssh2.session_close(s)
  local n = 0
  while coroutine.status(co) ~= "dead" and n < 100 do n = n + 1; stdnse.sleep(0.1) end
  out[#out + 1] = ("slow output: %q"):format(slow)
  out[#out + 1] = ("worker finished first: %s"):format(worker_done ~= nil and worker_done < main_done)

  -- 3. a thread that ends without closing its session: the engine's cleanup closes it, so
  -- the server keeps only the checking session's processes for this user.
  local keep = {}
  co = stdnse.new_thread(function() keep[1] = login(host, port) end)
  n = 0
  while coroutine.status(co) ~= "dead" and n < 100 do n = n + 1; stdnse.sleep(0.1) end
  stdnse.sleep(1)
  s = login(host, port)
  local ps = run(s, "ps -u $(id -un) -o args= | grep -c '^sshd: '")
  libssh2.session_close(s)
  out[#out + 1] = ("user sshd processes: %s"):format(ps:match("%d+"))
  return table.concat(out, "\n")
end
