#!/usr/bin/python3
"""`nsefleet worker` against a fake coordinator (test/fleet/worker_fakecoord.py).

  test/fleet/worker_protocol_test.py [path/to/nsefleet] [case ...]

Cases:
  lease      Hello fields; one lease of two loopback hosts whose script takes a fleet mutex:
             HostResult per host before GroupDone, heartbeats renewing the lease, SharedOp
             trylock/lock/unlock round trips, registry published; a malformed frame is
             dropped; NoWork{scan_done} -> Bye and exit 0.
  phase      RunPhase{prerule} runs the runtime's mutex and condvar conformance scripts with
             every lock/condvar op going through the fake coordinator; PhaseResult carries
             the same results the embedded mode gives and the registry; coordinator Bye -> 0.
  leaselost  LeaseLost while a script sleeps: the group is abandoned at once (no GroupDone,
             no HostResult, no longer in heartbeats) and the engine asks for work again.
  rejoin     Error{NotAuthorized} after Welcome (coordinator restarted): running group
             abandoned, Hello again, work resumes after the new Welcome.
  silent     A coordinator that stops talking: the worker exits 3 with a clear message.
  refused    Error{BadVersion} instead of Welcome: exit 3; no Welcome at all: exit 3.
  coordinator  the real `nsefleet coordinator` with two real workers: both exit 0 and the
             report equals the embedded `nsefleet scan` one (skipped if the build has no
             coordinator yet).
  curve      the real coordinator with CURVE keys: unadmitted worker key -> exit 3, admitted
             -> exit 0, --key with --insecure -> usage error.

Only 127.0.0.1/127.0.0.2 listeners this test starts are scanned. Prints "N passed, M failed".
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402
from testkit import PROTOCOL, free_port  # noqa: E402
from worker_fakecoord import (ROOT, FakeCoordinator, host_dict, py_to_value,  # noqa: E402
                              value_to_py)

SCRIPTS = {
    "fleet_mutex_port": r'''
local nmap = require "nmap"
local stdnse = require "stdnse"
description = "fleet worker test: a fleet mutex around a registry counter"
categories = {"safe"}
portrule = function(host, port) return port.state == "open" end
action = function(host, port)
  local m = nmap.mutex("fleet-worker-test")
  m "lock"
  nmap.registry.fleet_hits = (nmap.registry.fleet_hits or 0) + 1
  stdnse.sleep(0.6)
  m "done"
  return "locked-and-unlocked " .. host.ip
end
''',
    "fleet_phase": r'''
local nmap = require "nmap"
description = "fleet worker test: registry in and out of a phase"
categories = {"safe"}
prerule = function() return true end
action = function()
  nmap.registry.from_prerule = "yes"
  return "seed=" .. tostring(nmap.registry.seed)
end
''',
    "fleet_sleep_port": r'''
local stdnse = require "stdnse"
description = "fleet worker test: a slow script to lose the lease under"
categories = {"safe"}
portrule = function(host, port) return port.state == "open" end
action = function() stdnse.sleep(20) return "should never be reported" end
''',
}


class Listeners:
    """Accept-and-close TCP listeners on the same port of 127.0.0.1 and 127.0.0.2."""

    def __init__(self):
        for _ in range(20):
            a = socket.socket()
            a.bind(("127.0.0.1", 0))
            self.port = a.getsockname()[1]
            b = socket.socket()
            try:
                b.bind(("127.0.0.2", self.port))
            except OSError:
                a.close()
                b.close()
                continue
            break
        self.socks = [a, b]
        self.stop = False
        for s in self.socks:
            s.listen(16)
            s.settimeout(0.2)
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        while not self.stop:
            try:
                c, _ = s.accept()
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        time.sleep(0.3)
        for s in self.socks:
            s.close()


class Worker:
    def __init__(self, binary, endpoint, *extra):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([binary, "worker", "--connect", endpoint, "--insecure", *extra],
                                  stdout=self.out, stderr=self.err)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def serve_until(fc, deadline, on_message):
    """Polls the fake coordinator, answering Heartbeats with LeaseRenewed; calls
    on_message(name, body) for everything; stops when it returns True or at the deadline."""
    while time.time() < deadline:
        m = fc.poll(0.05)
        if not m:
            if on_message(None, None):
                return True
            continue
        name, body = m
        if name == "Heartbeat" and body[1]:
            fc.send("LeaseRenewed", [body[1], time.time() + fc.lease_ms / 1000])
        if on_message(name, body):
            return True
    return False


def case_lease(binary, scripts):
    lis = Listeners()
    fc = FakeCoordinator(heartbeat_ms=200)
    w = Worker(binary, fc.endpoint, "--engines", "2", "--name", "fake-test", "-v")
    try:
        hello = fc.wait_for("Hello", 10)
        if not testkit.check(hello is not None, "Hello received", w.stderr()):
            return
        testkit.eq("Hello protocol/name/engines/pid", hello[:4], [PROTOCOL, "fake-test", 2, w.p.pid])
        fc.welcome(ports=[[lis.port, ord("t")]], scripts=[scripts["fleet_mutex_port"]])
        fc.send_raw(b"\x93\x01\x02")            # not an envelope
        fc.send_raw(b"\xdd\xff\xff\xff\xff")    # claims 4G elements
        state = dict(leased=False, done=False, bye=False, t_lease=0)
        lease_hosts = [[0, "127.0.0.1", False, "", []], [1, "127.0.0.2", False, "two", []]]

        def on(name, body):
            if name == "RequestWork":
                if not state["leased"]:
                    state["leased"] = True
                    state["t_lease"] = time.time()
                    fc.send("Lease", [7, 1, time.time() + 3, lease_hosts])
                else:
                    fc.send("NoWork", [100, state["done"]])
            elif name == "GroupDone":
                state["done"] = True
            elif name == "Bye":
                state["bye"] = True
            return state["bye"]

        testkit.check(serve_until(fc, time.time() + 40, on), "worker said Bye after scan_done", w.stderr())
        rc = w.wait(10)
        testkit.eq("exit status", rc, 0)
        names = [n for _, n, _ in fc.log]
        hrs = fc.received("HostResult")
        testkit.eq("two HostResults for group 7", sorted((b[0], b[1][0]) for b in hrs), [(7, 0), (7, 1)])
        gd = fc.received("GroupDone")
        testkit.check(len(gd) == 1 and gd[0][0] == 7 and gd[0][1] == 2, "one GroupDone{7, hosts=2}", gd)
        if gd:
            testkit.check(gd[0][2] >= 1.0, "GroupDone elapsed covers the scripts", gd[0][2])
        if hrs and gd:
            testkit.check(max(i for i, n in enumerate(names) if n == "HostResult") < names.index("GroupDone"),
                          "HostResults before GroupDone")
        for b in hrs:
            h = host_dict(b[1])
            port = [p for p in h["ports"] if p["number"] == lis.port]
            testkit.check(port and port[0]["state"] == "open" and
                          port[0]["scripts"].get("fleet_mutex_port") == "locked-and-unlocked " + h["address"],
                          "host %s: port open with the script's output" % h["address"],
                          port)
            if h["index"] == 1:
                testkit.eq("targetname carried through", h["targetname"], "two")
        # Heartbeats listed the group while it ran, about every 200 ms.
        hb = [(t, b) for t, n, b in fc.log if n == "Heartbeat"]
        with7 = [t for t, b in hb if 7 in b[1]]
        testkit.check(len(with7) >= 4, "heartbeats renewed group 7 while it ran (>= 4)", len(with7))
        gaps = [b - a for a, b in zip([t for t, _ in hb], [t for t, _ in hb][1:])]
        testkit.check(gaps and max(gaps) < 0.6, "heartbeat gaps under 600 ms", gaps and max(gaps))
        testkit.check(all(7 not in b[1] for t, b in hb if t > fc.log[names.index("GroupDone")][0] + 0.01)
                      if gd else False,
                      "heartbeats after GroupDone no longer list 7")
        ops = [(o, k) for o, k, _ in fc.shared_log]
        key = "s:fleet-worker-test"
        testkit.check(("MutexTrylock", key) in ops, "trylock round trip", ops)
        testkit.check(("MutexLock", key) in ops, "contended lock queued and granted", ops)
        testkit.eq("two unlocks", ops.count(("MutexUnlock", key)), 2)
        testkit.check(fc.mutex.get(key, [None])[0] is None, "unlocks were by the owners", fc.mutex.get(key))
        testkit.check(("RegistryChanges", "") in ops, "registry fetched before scripts", ops)
        testkit.eq("registry merged back", (value_to_py(fc.registry) or {}).get("fleet_hits"), 2)
        owners = {who for o, k, who in fc.shared_log if o == "MutexTrylock"}
        testkit.check(owners and all(e >> 12 == 5 for e, _ in owners), "owner engine ids derive from worker_id 5", owners)
        testkit.check("dropped a malformed frame" in w.stderr(), "malformed frames logged, not fatal", w.stderr())
        testkit.check(all(b == [1] for b in fc.received("RequestWork")), "requests ask for one slot each")
    finally:
        w.kill()
        fc.close()
        lis.close()


MUTEX_EXPECT = {
    "contention_finished": "true", "contention_counter": "50",
    "contention_max_inside": "1", "contention_free_after": "true",
    "same_function": "true", "table_keys_distinct": "true", "table_key_same": "true",
    "number_key_error": "true",
    "trylock_free": "true", "running_is_me": "true",
    "running_after_done": "nil", "running_after_done_nvals": "1",
    "done_unlocked": "do not have a lock on this mutex",
    "trylock_held": "false", "running_is_worker": "true",
    "done_by_non_owner": "do not have a lock on this mutex",
    "trylock_after_release": "true",
    "fifo_order": "1,2,3,4,5",
    "waiter_got_lock_after_error": "true", "dead_holder_status": "dead",
    "dead_holder_error": "true", "lock_free_after_return": "true",
}
CONDVAR_EXPECT = {
    "same_function": "true",
    "after_first_signal": "3", "after_second_signal": "3,2", "after_broadcast": "3,2,1",
    "bad_op": "true", "boolean_key_error": "true", "broadcast_woken": "8",
    "woken_by_worker_return": "true", "woken_by_worker_error": "true",
}


def as_text(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def case_phase(binary, scripts):
    fc = FakeCoordinator(heartbeat_ms=200)
    nse = os.path.join(ROOT, "test", "nse")
    w = Worker(binary, fc.endpoint, "--engines", "1")
    try:
        if not testkit.check(fc.wait_for("Hello", 10) is not None, "Hello received", w.stderr()):
            return
        fc.welcome(ping_only=True, scripts=[os.path.join(nse, "runtime_mutex.nse"),
                                            os.path.join(nse, "runtime_condvar.nse"),
                                            scripts["fleet_phase"]])
        fc.registry = py_to_value({"seed": "x"})  # the phase fetches it (RegistryChanges)
        fc.send("RunPhase", [3, 1])
        got = {}

        def on(name, body):
            if name == "RequestWork":
                fc.send("NoWork", [200, False])
            elif name == "PhaseResult":
                got["r"] = body
            return "r" in got

        t0 = time.time()
        testkit.check(serve_until(fc, time.time() + 60, on), "PhaseResult received", w.stderr())
        if "r" not in got:
            return
        testkit.info("phase took %.1f s with %d shared ops" % (time.time() - t0, len(fc.shared_log)))
        phase_id, phase, res, registry, error = got["r"]
        testkit.eq("phase id and kind echoed", (phase_id, phase, error), (3, 1, ""))
        by_id = {s[0]: s for s in res}
        for sid, want in (("runtime_mutex", MUTEX_EXPECT), ("runtime_condvar", CONDVAR_EXPECT)):
            s = by_id.get(sid)
            if not testkit.check(s is not None and s[2], "%s produced a result" % sid, res):
                continue
            v = value_to_py(s[2][0])
            for k, x in want.items():
                testkit.eq("%s %s" % (sid, k), as_text(v.get(k, "nil")), x)
        testkit.eq("prerule read the registry it was given", by_id.get("fleet_phase", [0, ""])[1], "seed=x")
        reg = value_to_py(registry) or {}
        # A delta: what the phase changed (from_prerule), not what it was given (seed).
        testkit.eq("PhaseResult registry is the phase's delta", (reg.get("seed"), reg.get("from_prerule")),
                   (None, "yes"))
        regops = [o for o, _, _ in fc.shared_log if o.startswith("Registry")]
        testkit.eq("phase fetched the registry once and merged nothing through SharedOp",
                   regops, ["RegistryChanges"])
        ops = {o for o, _, _ in fc.shared_log}
        testkit.check({"MutexLock", "MutexTrylock", "MutexUnlock", "MutexOwner", "MutexAbandon",
                       "CondWait", "CondSignal", "CondBroadcast"} <= ops,
                      "mutex and condvar ops went to the coordinator", ops)
        fc.send("Bye", ["test over"])
        testkit.eq("exit status after coordinator Bye", w.wait(10), 0)
    finally:
        w.kill()
        fc.close()


def case_leaselost(binary, scripts):
    lis = Listeners()
    fc = FakeCoordinator(heartbeat_ms=200)
    w = Worker(binary, fc.endpoint, "--engines", "1")
    try:
        if not testkit.check(fc.wait_for("Hello", 10) is not None, "Hello received", w.stderr()):
            return
        fc.welcome(ports=[[lis.port, ord("t")]], scripts=[scripts["fleet_sleep_port"]])
        st = dict(leased=False, lost_at=None, again_at=None, done=False)

        def on(name, body):
            now = time.time()
            if name == "RequestWork":
                if not st["leased"]:
                    st["leased"] = True
                    fc.send("Lease", [9, 1, now + 3, [[0, "127.0.0.1", False, "", []]]])
                else:
                    if st["lost_at"] and not st["again_at"]:
                        st["again_at"] = now
                    fc.send("NoWork", [100, st["again_at"] is not None and now - st["again_at"] > 1])
            elif name == "Heartbeat" and 9 in body[1] and st["lost_at"] is None and st["leased"]:
                # Give the script time to start sleeping.
                if now - fc.log[0][0] > 1.5:
                    st["lost_at"] = now
                    fc.send("LeaseLost", [9, "test"])
            return name == "Bye"

        testkit.check(serve_until(fc, time.time() + 30, on), "worker finished", w.stderr())
        testkit.eq("exit status", w.wait(10), 0)
        testkit.check(st["lost_at"] is not None, "lease was lost mid-script")
        if st["lost_at"] and st["again_at"]:
            took = st["again_at"] - st["lost_at"]
            testkit.info("engine free again %.2f s after LeaseLost" % took)
            testkit.check(took < 3, "engine asked for work again within 3 s", took)
        else:
            testkit.check(False, "engine asked for work again")
        testkit.eq("no HostResult for the lost group", fc.received("HostResult"), [])
        testkit.eq("no GroupDone for the lost group", fc.received("GroupDone"), [])
        late = [b for t, n, b in fc.log
                if n == "Heartbeat" and st["lost_at"] and t > st["lost_at"] + 0.5 and 9 in b[1]]
        testkit.eq("heartbeats stop listing the lost group", late, [])
    finally:
        w.kill()
        fc.close()
        lis.close()


def case_rejoin(binary, scripts):
    lis = Listeners()
    fc = FakeCoordinator(heartbeat_ms=200)
    w = Worker(binary, fc.endpoint, "--engines", "1")
    try:
        if not testkit.check(fc.wait_for("Hello", 10) is not None, "Hello received", w.stderr()):
            return
        fc.welcome(worker_id=5, ports=[[lis.port, ord("t")]], scripts=[scripts["fleet_sleep_port"]])
        st = dict(leases=0, forgot_at=None, hello2=None, welcomed=False, done=False)

        def on(name, body):
            now = time.time()
            if name == "RequestWork":
                if st["leases"] == 0:
                    st["leases"] = 1
                    fc.send("Lease", [9, 1, now + 3, [[0, "127.0.0.1", False, "", []]]])
                elif st["welcomed"] and st["leases"] == 1:
                    st["leases"] = 2
                    fc.send("Lease", [10, 1, now + 3, [[1, "127.0.0.2", False, "", []]]])
                else:
                    fc.send("NoWork", [100, st["done"]])
            elif name == "Heartbeat" and st["forgot_at"] is None and 9 in body[1] and now - fc.log[0][0] > 1.5:
                # The "restarted" coordinator does not know this worker.
                st["forgot_at"] = now
                fc.send("Error", [5, "say Hello first", 0])
            elif name == "Hello" and st["forgot_at"] and not st["welcomed"]:
                st["hello2"] = now
                st["welcomed"] = True
                fc.welcome(worker_id=6, ports=[[lis.port, ord("t")]], scripts=[scripts["fleet_sleep_port"]])
            return name == "Bye"

        # The second lease's script sleeps 20 s too: once it is running (heartbeats list it),
        # end the test with LeaseLost and scan_done.
        def on2(name, body):
            if name == "Heartbeat" and 10 in body[1] and not st.get("lost10"):
                st["lost10"] = True
                st["done"] = True
                fc.send("LeaseLost", [10, "test over"])
            return on(name, body)

        testkit.check(serve_until(fc, time.time() + 40, on2), "worker finished", w.stderr())
        testkit.eq("exit status", w.wait(10), 0)
        testkit.check(st["hello2"] is not None and
                      st["hello2"] - st["forgot_at"] < 1.0, "Hello sent again after NotAuthorized", st)
        testkit.eq("no GroupDone for the voided lease", [b for b in fc.received("GroupDone") if b[0] == 9], [])
        testkit.check(st["leases"] == 2, "work resumed after the new Welcome", st)
        hb_gap = [b for t, n, b in fc.log if n == "Heartbeat" and st["forgot_at"] and
                  st["forgot_at"] + 0.05 < t < (st["hello2"] or 0)]
        testkit.eq("no heartbeats between NotAuthorized and the new Welcome", hb_gap, [])
        testkit.check("saying Hello again" in w.stderr(), "rejoin message logged", w.stderr())
    finally:
        w.kill()
        fc.close()
        lis.close()


def case_silent(binary, scripts):
    fc = FakeCoordinator(heartbeat_ms=200)
    w = Worker(binary, fc.endpoint, "--engines", "1", "--coordinator-timeout", "2")
    try:
        if not testkit.check(fc.wait_for("Hello", 10) is not None, "Hello received", w.stderr()):
            return
        fc.welcome(ping_only=True)
        t0 = time.time()
        # Receive (so heartbeats are consumed) but never answer.
        while w.p.poll() is None and time.time() - t0 < 15:
            fc.poll(0.1)
        rc = w.wait(1)
        took = time.time() - t0
        testkit.eq("exit status when the coordinator falls silent", rc, 3)
        testkit.check(1.8 < took < 6, "gave up after about 2 s", took)
        testkit.check("no message from the coordinator" in w.stderr(), "message says so", w.stderr())
        testkit.check(len(fc.received("Heartbeat")) >= 5, "kept heartbeating while waiting",
                      len(fc.received("Heartbeat")))
    finally:
        w.kill()
        fc.close()


def case_refused(binary, scripts):
    fc = FakeCoordinator()
    w = Worker(binary, fc.endpoint, "--coordinator-timeout", "1.5")
    try:
        if not testkit.check(fc.wait_for("Hello", 10) is not None, "Hello received", w.stderr()):
            return
        fc.send("Error", [3, "protocol 1 not spoken here", 1])
        testkit.eq("exit status on BadVersion", w.wait(10), 3)
        testkit.check("refused this worker" in w.stderr(), "message names the refusal", w.stderr())
    finally:
        w.kill()
        fc.close()
    fc = FakeCoordinator()
    w = Worker(binary, fc.endpoint, "--coordinator-timeout", "1.5")
    try:
        t0 = time.time()
        testkit.eq("exit status with no Welcome", w.wait(10), 3)
        testkit.check(1.3 < time.time() - t0 < 5, "gave up after about 1.5 s")
        testkit.check("no Welcome from the coordinator at " + fc.endpoint in w.stderr(), "message names the endpoint",
                      w.stderr())
    finally:
        w.kill()
        fc.close()
    # Usage errors never reach the network.
    r = subprocess.run([binary, "worker", "--insecure"], capture_output=True, text=True, timeout=10)
    testkit.check(r.returncode == 2 and "--connect" in r.stderr, "missing --connect is a usage error", r.stderr)
    r = subprocess.run([binary, "worker", "--connect", "tcp://127.0.0.1:1"], capture_output=True,
                       text=True, timeout=10)
    testkit.check(r.returncode == 2 and "insecure" in r.stderr, "plain tcp:// without --insecure refused", r.stderr)


def case_coordinator(binary, scripts):
    """Two real workers (one engine each) under the real coordinator: same report as the
    embedded mode."""
    r = subprocess.run([binary, "coordinator"], capture_output=True, text=True, timeout=10)
    if "not available in this build" in r.stderr:
        testkit.info("skipped: no coordinator in this build")
        return
    lis = Listeners()
    tmp = tempfile.mkdtemp(prefix="fworker-e2e-")
    procs = []
    try:
        scan = ["-sT", "-Pn", "-n", "-p", str(lis.port), "--script", scripts["fleet_mutex_port"],
                "--max-hostgroup", "1"]
        targets = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
        ref = subprocess.run([binary, "scan", *scan, "-oN", os.path.join(tmp, "emb.txt"), *targets],
                             capture_output=True, text=True, timeout=60)
        testkit.eq("embedded reference scan", ref.returncode, 0)
        ep = "tcp://127.0.0.1:%d" % free_port()
        co = subprocess.Popen([binary, "coordinator", "--listen", ep, "--state", os.path.join(tmp, "st"),
                               "--insecure", *scan, "-oN", os.path.join(tmp, "fleet.txt"), *targets],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(co)
        time.sleep(0.3)
        ws = [Worker(binary, ep, "--engines", "1", "--name", "w%d" % i) for i in (1, 2)]
        t0 = time.time()
        rcs = [w.wait(60) for w in ws]
        took = time.time() - t0
        try:
            crc = co.wait(20)
        except subprocess.TimeoutExpired:
            crc = None
        testkit.info("fleet scan of 4 hosts with 2 workers took %.1f s" % took)
        testkit.eq("both workers exit 0", rcs, [0, 0])
        testkit.eq("coordinator exits 0", crc, 0)

        def body(path):
            try:
                return [l for l in open(path).read().splitlines()
                        if "latency" not in l and not l.startswith("#")]
            except OSError:
                return None
        emb, fleet = body(os.path.join(tmp, "emb.txt")), body(os.path.join(tmp, "fleet.txt"))
        testkit.check(fleet is not None and all(any(("locked-and-unlocked " + t) in l for l in fleet) for t in targets[:2]),
                      "report has the script result of both listening hosts",
                      fleet)
        testkit.eq("fleet report equals the embedded one", fleet, emb)
        for w in ws:
            w.kill()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        lis.close()
        shutil.rmtree(tmp, ignore_errors=True)


def case_curve(binary, scripts):
    """CURVE: a worker whose key the coordinator does not admit never gets a Welcome (exit 3);
    the admitted one scans; a key with --insecure is a usage error."""
    r = subprocess.run([binary, "coordinator"], capture_output=True, text=True, timeout=10)
    if "not available in this build" in r.stderr:
        testkit.info("skipped: no coordinator in this build")
        return
    lis = Listeners()
    tmp = tempfile.mkdtemp(prefix="fworker-curve-")
    co = None
    try:
        k = lambda n: os.path.join(tmp, n)  # noqa: E731
        os.mkdir(k("allow"))
        for name in ("coord", "good", "bad"):
            subprocess.run([binary, "keygen", k(name)], check=True, capture_output=True, timeout=10)
        shutil.copy(k("good.pub"), k("allow"))
        ep = "tcp://127.0.0.1:%d" % free_port()
        co = subprocess.Popen([binary, "coordinator", "--listen", ep, "--state", k("st"),
                               "--key", k("coord.key"), "--allow", k("allow"),
                               "-sT", "-Pn", "-n", "-p", str(lis.port), "-oN", k("out.txt"), "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        bad = subprocess.run([binary, "worker", "--connect", ep, "--key", k("bad.key"), "--server-key",
                              k("coord.pub"), "--coordinator-timeout", "1.5", "--engines", "1"],
                             capture_output=True, text=True, timeout=30)
        testkit.eq("unadmitted key: exit 3", bad.returncode, 3)
        testkit.check("keys" in bad.stderr, "unadmitted key: message hints at keys", bad.stderr)
        mixed = subprocess.run([binary, "worker", "--connect", ep, "--key", k("good.key"), "--server-key",
                                k("coord.pub"), "--insecure"], capture_output=True, text=True, timeout=30)
        testkit.eq("--key with --insecure: usage error", mixed.returncode, 2)
        good = subprocess.run([binary, "worker", "--connect", ep, "--key", k("good.key"), "--server-key",
                               k("coord.pub"), "--engines", "1"], capture_output=True, text=True, timeout=60)
        testkit.eq("admitted key: scan done, exit 0", good.returncode, 0)
        try:
            testkit.eq("coordinator exit 0", co.wait(20), 0)
        except subprocess.TimeoutExpired:
            testkit.check(False, "coordinator finished")
        out = open(k("out.txt")).read() if os.path.exists(k("out.txt")) else ""
        testkit.check("%d/tcp open" % lis.port in out, "report has the open port", out)
    finally:
        if co and co.poll() is None:
            co.kill()
            co.wait()
        lis.close()
        shutil.rmtree(tmp, ignore_errors=True)


CASES = [("lease", case_lease), ("phase", case_phase), ("leaselost", case_leaselost),
         ("rejoin", case_rejoin), ("silent", case_silent), ("coordinator", case_coordinator),
         ("curve", case_curve), ("refused", case_refused)]


def main():
    args = sys.argv[1:]
    binary = os.path.join(ROOT, "build", "nsefleet")
    if args and os.path.sep in args[0]:
        binary = os.path.abspath(args.pop(0))
    wanted = set(args)
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name, text in SCRIPTS.items():
            scripts[name] = os.path.join(tmp, name + ".nse")
            with open(scripts[name], "w") as f:
                f.write(text)
        for name, fn in CASES:
            if wanted and name not in wanted:
                continue
            testkit.info("case " + name)
            try:
                fn(binary, scripts)
            except Exception as e:  # a broken worker must fail the case, not the runner
                testkit.check(False, "case %s raised" % name, repr(e))
    sys.exit(testkit.summary())


if __name__ == "__main__":
    main()
