#!/usr/bin/python3
"""Fleet tests: a real `nsefleet coordinator` process, driven by fake workers written here
(pyzmq + msgpack, speaking docs/protocol.md) and, when the build has them, real
`nsefleet worker` processes. Everything runs inside the service lab's network namespace
(test/lab/lab.sh), on 127.0.0.0/8 only. Every wait is bounded.

Usage: run_fleet_tests.py NSEFLEET_BINARY     (as root; starts and stops its own lab)
Needs Debian's python3-zmq and python3-msgpack (tools/setup installs them); run it with
/usr/bin/python3 so those are found.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NS = "nsefleet-fleet-%d" % os.getpid()

# Message type numbers (docs/protocol.md).
HELLO, WELCOME, HEARTBEAT, REQUEST_WORK, LEASE, NO_WORK, LEASE_RENEWED, LEASE_LOST = range(1, 9)
HOST_RESULT, GROUP_DONE, RUN_PHASE, PHASE_RESULT, SHARED_OP, SHARED_REPLY, SHARED_NOTIFY = range(9, 16)
STATUS_QUERY, STATUS_REPLY, ERROR, BYE = range(16, 20)

check = testkit.check
info = testkit.info


# ---------------------------------------------------------------- inner part (in the lab)

def inner(binary):
    import msgpack
    import zmq

    ctx = zmq.Context()
    work = tempfile.mkdtemp(prefix="fleet-test-")

    def pack(t, body, seq=1):
        return msgpack.packb(["nsf", testkit.PROTOCOL, t, seq, body], use_bin_type=False)

    def unpack(b):
        m = msgpack.unpackb(b, raw=True, strict_map_key=False)
        return m[2], m[4]


    class FakeWorker(threading.Thread):
        """A worker that 'scans' by answering every host as up with no ports.
        delay: seconds per host. die_after: stop talking (like kill -9) after that many
        HostResults. Re-says Hello when the coordinator does not know it (restarts)."""

        def __init__(self, endpoint, name, delay=0.0, die_after=None, engines=1, curve=None,
                     time_limit=60, short=False):
            super().__init__(daemon=True)
            self.short = short  # leave each group's last host out (a group that keeps failing)
            self.endpoint, self.name, self.delay, self.die_after = endpoint, name, delay, die_after
            self.engines, self.curve, self.time_limit = engines, curve, time_limit
            self.sent_hosts = []     # host indexes sent
            self.welcomed = False
            self.done = False
            self.lost = []
            self.stop = False
            self.errors = []

        def run(self):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if self.curve:
                pub, sec, server = self.curve
                s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, server
            s.connect(self.endpoint)
            seq = [0]

            def send(t, body):
                seq[0] += 1
                s.send(pack(t, body, seq[0]))

            send(HELLO, [testkit.PROTOCOL, self.name, self.engines, os.getpid(), ["fake"]])
            hb_ms = 1000
            last_hb = time.time()
            end = time.time() + self.time_limit
            leases = []
            while time.time() < end and not self.stop:
                if s.poll(50):
                    t, body = unpack(s.recv())
                    if t == WELCOME:
                        self.welcomed = True
                        hb_ms = body[2]
                        send(REQUEST_WORK, [self.engines])
                    elif t == LEASE:
                        leases.append(body)
                    elif t == NO_WORK:
                        if body[1]:
                            self.done = True
                            send(BYE, ["done"])
                            break
                        time.sleep(body[0] / 1000.0 / 4)
                        send(REQUEST_WORK, [self.engines])
                    elif t == LEASE_LOST:
                        self.lost.append(body[0])
                    elif t == ERROR:
                        self.errors.append(body[0])
                        if body[0] == 5:  # NotAuthorized: the coordinator restarted
                            send(HELLO, [testkit.PROTOCOL, self.name, self.engines, os.getpid(), ["fake"]])
                    elif t == BYE:
                        self.done = True
                        break
                elif leases:
                    gid, attempt, deadline, hosts = leases.pop(0)
                    for h in (hosts[:-1] if self.short else hosts):
                        index, addr, ipv6, tname, others = h
                        t0 = time.time()
                        time.sleep(self.delay)
                        host = [index, addr.decode(), ipv6, tname.decode(), "", "up", "user-set",
                                0, 0.0, "", 0, False, "", "", "", False, t0, t0 + self.delay, [], [], 0,
                                others]
                        send(HOST_RESULT, [gid, host])
                        self.sent_hosts.append(index)
                        if time.time() - last_hb > hb_ms / 1000.0:
                            send(HEARTBEAT, [time.time(), [gid], 1])
                            last_hb = time.time()
                        if self.die_after is not None and len(self.sent_hosts) >= self.die_after:
                            s.close(0)
                            return
                    send(GROUP_DONE, [gid, len(hosts), 0.1])
                    send(REQUEST_WORK, [self.engines])
                if time.time() - last_hb > hb_ms / 1000.0:
                    send(HEARTBEAT, [time.time(), [], 0])
                    last_hb = time.time()
            s.close(0)

    class Coord:
        def __init__(self, state, args, resume=False, lease="2s", extra=()):
            self.port = testkit.free_port()
            self.endpoint = "tcp://127.0.0.1:%d" % self.port
            cmd = [binary, "coordinator", "--listen", self.endpoint, "--state", state,
                   "--lease-timeout", lease] + list(extra)
            if resume:
                cmd.append("--resume")
            if "--key" not in extra:
                cmd.append("--insecure")
            self.log = open(os.path.join(work, "coord-%d.log" % self.port), "w")
            self.logpath = self.log.name
            self.p = subprocess.Popen(cmd + args, stdout=subprocess.DEVNULL, stderr=self.log)
            time.sleep(0.4)

        def wait(self, t=60):
            try:
                return self.p.wait(timeout=t)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None

        def stderr(self):
            self.log.flush()
            return open(self.logpath).read()

    def hosts_of_xml(path):
        if not os.path.exists(path):
            return []
        x = open(path).read()
        return re.findall(r'<address addr="([^"]+)"', x)

    def mask(xml):
        xml = re.sub(r'(start|startstr|end|endstr|time|timestr|elapsed|starttime|endtime|srtt|rttvar|to|summary)="[^"]*"',
                     r'\1="X"', xml)
        return re.sub(r'<!-- nsefleet .* -->', '<!-- header -->', xml)

    targets_40 = ["127.0.1.1-40"]
    expect_40 = ["127.0.1.%d" % i for i in range(1, 41)]
    scan = ["-sT", "-Pn", "-n", "-p", "80", "--max-hostgroup", "4"]

    # 1. Three fake workers complete a scan; every host exactly once, in target order.
    st = os.path.join(work, "s1")
    xml1, js1 = os.path.join(work, "s1.xml"), os.path.join(work, "s1.json")
    c = Coord(st, scan + ["-oX", xml1, "-oJ", js1] + targets_40)
    ws = [FakeWorker(c.endpoint, "fake%d" % i, delay=0.01) for i in range(3)]
    for w in ws:
        w.start()
    rc = c.wait(60)
    for w in ws:
        w.join(5)
    check(rc == 0, "fake fleet: coordinator exits 0 (rc=%s)" % rc)
    check(hosts_of_xml(xml1) == expect_40, "fake fleet: XML has each of 40 hosts once, in order")
    lines = open(js1).read().splitlines() if os.path.exists(js1) else []
    check(len(lines) == 40, "fake fleet: NDJSON streamed 40 lines (%d)" % len(lines))
    check(sum(1 for w in ws if w.sent_hosts) >= 2, "fake fleet: work spread over workers %s" %
          [len(w.sent_hosts) for w in ws])
    check(all(w.done for w in ws), "fake fleet: every worker told scan_done / Bye")
    check(not os.path.exists(xml1 + ".part"), "fake fleet: no .part left")

    # 2. A worker dies mid-group (stops talking): its group is requeued, every host once.
    st = os.path.join(work, "s2")
    xml2 = os.path.join(work, "s2.xml")
    c = Coord(st, scan + ["-oX", xml2] + targets_40, lease="1.5s")
    dying = FakeWorker(c.endpoint, "dying", delay=0.05, die_after=2)
    dying.start()
    time.sleep(0.5)
    ws = [FakeWorker(c.endpoint, "ok%d" % i, delay=0.02) for i in range(2)]
    for w in ws:
        w.start()
    rc = c.wait(60)
    check(rc == 0, "dead worker: scan completes (rc=%s)" % rc)
    check(hosts_of_xml(xml2) == expect_40, "dead worker: every host exactly once, in order")
    check("requeued" in c.stderr(), "dead worker: coordinator logged the requeue")

    # 2b. A group that keeps failing stops the scan, but the report keeps every host the
    # scan has: exit 1, the reason, and the XML completed with the committed hosts.
    st = os.path.join(work, "s2b")
    xml2b = os.path.join(work, "s2b.xml")
    c = Coord(st, scan + ["-oX", xml2b] + targets_40)
    w = FakeWorker(c.endpoint, "short", delay=0.0, short=True)
    w.start()
    rc = c.wait(60)
    w.stop = True
    w.join(5)
    err = c.stderr()
    got = hosts_of_xml(xml2b)
    check(rc == 1 and "failed 3 times" in err, "failing group: scan stops with exit 1 and the reason (rc=%s)" % rc)
    check(len(got) >= 3 and got == sorted(set(got), key=lambda a: int(a.split(".")[-1])) and
          set(got) <= set(expect_40) and os.path.exists(xml2b) and not os.path.exists(xml2b + ".part"),
          "failing group: the XML is complete and holds the %d hosts scanned before the error" % len(got))
    check("not scanned" in err and "host(s) scanned before the error" in err,
          "failing group: the coordinator says what is missing (%s)" % err.strip().splitlines()[-1:])

    # 3. kill -9 the coordinator mid-scan, --resume finishes; result equals run 1's.
    st = os.path.join(work, "s3")
    xml3 = os.path.join(work, "s3.xml")
    args3 = scan + ["-oX", xml3] + targets_40
    c = Coord(st, args3)
    ws = [FakeWorker(c.endpoint, "slow%d" % i, delay=0.3, time_limit=90) for i in range(3)]
    for w in ws:
        w.start()
    time.sleep(2.0)
    c.p.send_signal(signal.SIGKILL)
    c.p.wait()
    before = sum(len(w.sent_hosts) for w in ws)
    check(0 < before < 40, "coordinator kill -9: killed mid-scan (%d hosts sent)" % before)
    check(not os.path.exists(xml3), "coordinator kill -9: no final XML yet")
    for w in ws:
        w.stop = True
    for w in ws:
        w.join(5)
    c2 = Coord(st, args3, resume=True)
    ws = [FakeWorker(c2.endpoint, "again%d" % i, delay=0.01) for i in range(3)]
    for w in ws:
        w.start()
    rc = c2.wait(60)
    check(rc == 0, "resume: coordinator finishes (rc=%s)" % rc)
    check(hosts_of_xml(xml3) == expect_40, "resume: every host exactly once, in order")
    redone = sum(len(w.sent_hosts) for w in ws)
    check(redone < 40, "resume: committed hosts not redone (%d rescanned)" % redone)
    if os.path.exists(xml1) and os.path.exists(xml3):
        a = mask(open(xml1).read()).replace(xml1, "OUT")
        b = mask(open(xml3).read()).replace(xml3, "OUT")
        # The two runs differ only in their command line (run 1 also wrote -oJ).
        a = re.sub(r'args="[^"]*"', "", a)
        b = re.sub(r'args="[^"]*"', "", b)
        check(a == b, "resume: XML equals the uninterrupted run's (times masked)")
    else:
        check(False, "resume: XML equals the uninterrupted run's")
    # A second --resume on a finished scan: nothing to do, same output again.
    c3 = Coord(st, args3, resume=True)
    rc = c3.wait(20)
    check(rc == 0 and hosts_of_xml(xml3) == expect_40, "resume of a finished scan rewrites the same output")
    # A fresh run on a used state dir is refused.
    c4 = Coord(st, args3)
    rc = c4.wait(20)
    check(rc not in (0, None) and "--resume" in c4.stderr(), "used --state without --resume is refused")

    # 4. Lock service: A holds a mutex, B queues, A dies -> B is granted; registry merge.
    st = os.path.join(work, "s4")
    c = Coord(st, scan + ["-oX", os.path.join(work, "s4.xml"), "127.0.1.1"], lease="3s")

    def session(name):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(c.endpoint)
        s.send(pack(HELLO, [testkit.PROTOCOL, name, 1, 1, []]))
        got = []
        end = time.time() + 5
        while time.time() < end and s.poll(int((end - time.time()) * 1000) + 1):
            t, body = unpack(s.recv())
            got.append((t, body))
            if t == WELCOME:
                return s, body[0]
        return s, None

    def recv_type(s, want, t=3.0):
        end = time.time() + t
        while time.time() < end:
            if s.poll(50):
                ty, body = unpack(s.recv())
                if ty == want:
                    return body
        return None

    a, ida = session("A")
    b, idb = session("B")
    check(ida and idb and ida != idb, "lock service: two sessions welcomed with distinct ids")
    a.send(pack(SHARED_OP, [1, 1, "k", [ida << 12 | 1, 1], None, 0, 0, 0]))
    n = recv_type(a, SHARED_NOTIFY)
    check(n is not None and n[1] == 1, "lock service: A granted a free mutex")
    b.send(pack(SHARED_OP, [2, 1, "k", [idb << 12 | 1, 1], None, 0, 0, 0]))
    b.send(pack(SHARED_OP, [3, 5, "k", [0, 0], None, 0, 0, 0]))
    r = recv_type(b, SHARED_REPLY)
    check(r is not None and r[2] == [[ida << 12 | 1, 1]], "lock service: owner is A while B waits")
    b.send(pack(SHARED_OP, [4, 10, "", [idb << 12 | 1, 0], [["x", 7]], 0, 0, 0]))
    r = recv_type(b, SHARED_REPLY)
    b.send(pack(SHARED_OP, [5, 11, "", [idb << 12 | 1, 0], None, 0, 0, 0]))
    r = recv_type(b, SHARED_REPLY)
    check(r is not None and r[3] == [[b"x", 7]], "lock service: registry merge and snapshot")
    a.close(0)  # A dies silently; B keeps heartbeating
    t0 = time.time()
    n = None
    while time.time() - t0 < 8 and n is None:
        b.send(pack(HEARTBEAT, [time.time(), [], 0]))
        n = recv_type(b, SHARED_NOTIFY, 0.3)
    check(n is not None and n[0] == 2, "lock service: dead A's mutex granted to B (%.1fs)" %
          (time.time() - t0))

    # 5. Hostile frames: random bytes, truncated messages, bad fields, wrong versions.
    rnd = random.Random(7)
    f = ctx.socket(zmq.DEALER)
    f.setsockopt(zmq.LINGER, 0)
    f.connect(c.endpoint)
    f.send(pack(HELLO, [testkit.PROTOCOL, "fuzzer", 1, 1, []]))
    good = [pack(HELLO, [testkit.PROTOCOL, "fz", 1, 1, []]), pack(HOST_RESULT, [99, [0] * 18]),
            pack(SHARED_OP, [1, 1, "k", [1, 1], None, 0, 0, 0]), pack(LEASE, [1, 1, 1.0, []])]
    for i in range(600):
        kind = i % 6
        if kind == 0:
            msg = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 64)))
        elif kind == 1:
            g = rnd.choice(good)
            msg = g[:rnd.randint(0, len(g) - 1)]
        elif kind == 2:
            msg = msgpack.packb(["nsf", rnd.choice([0, testkit.PROTOCOL + 1, 99]), 1, 1, []])
        elif kind == 3:
            msg = msgpack.packb(["nsf", testkit.PROTOCOL, rnd.randint(0, 300), rnd.randint(0, 2**64 - 1),
                                 [rnd.randint(-5, 5) for _ in range(rnd.randint(0, 5))]])
        elif kind == 4:
            msg = b"\xdd\xff\xff\xff\xff" + b"\x00" * rnd.randint(0, 8)  # 2^32 elements claimed
        else:
            msg = [pack(HOST_RESULT, [rnd.randint(0, 5), [rnd.randint(0, 3), "1.2.3.4"] + [0] * 16]),
                   pack(GROUP_DONE, [rnd.randint(0, 10**6), 1, 0.0]),
                   pack(HEARTBEAT, [0.0, [rnd.randint(0, 10)], 0]),
                   pack(SHARED_OP, [1, rnd.randint(1, 11), "q", [0, 0], None, 0, 0])][rnd.randint(0, 3)]
        f.send(msg)
        if i % 7 == 0:
            f.send_multipart([b"a", b"b", b"c"])  # multipart: dropped by the transport
    f.send(b"\x00" * (17 << 20))  # above the 16 MiB cap: peer disconnected by libzmq
    time.sleep(1.0)
    check(c.p.poll() is None, "hostile frames: coordinator still running")
    out = subprocess.run([binary, "status", "--connect", c.endpoint, "--insecure"],
                         capture_output=True, text=True, timeout=15)
    check(out.returncode == 0 and "hosts:" in out.stdout,
          "status command answers after the fuzzing: %r" % out.stdout.splitlines()[:2])
    check("bad frame" in c.stderr(), "hostile frames are logged")
    c.p.send_signal(signal.SIGTERM)
    rc = c.wait(15)
    check(rc == 130, "SIGTERM: coordinator stops cleanly (rc=%s)" % rc)
    b.close(0)
    f.close(0)

    # 6. CURVE: only allowed keys are admitted.
    kd = os.path.join(work, "keys")
    os.makedirs(os.path.join(kd, "allow"))
    for n in ("coord", "good", "bad"):
        r = subprocess.run([binary, "keygen", os.path.join(kd, n)], capture_output=True, timeout=10)
    shutil.copy(os.path.join(kd, "good.pub"), os.path.join(kd, "allow"))
    check(oct(os.stat(os.path.join(kd, "coord.key")).st_mode & 0o777) == "0o600", "keygen: .key is 0600")

    def keys(n):
        t = open(os.path.join(kd, n + ".key")).read()
        return (re.search(r'public-key = "([^"]+)"', t).group(1).encode(),
                re.search(r'secret-key = "([^"]+)"', t).group(1).encode())

    server_pub = keys("coord")[0]
    st = os.path.join(work, "s6")
    xml6 = os.path.join(work, "s6.xml")
    c = Coord(st, scan + ["-oX", xml6, "127.0.1.1-8"],
              extra=["--key", os.path.join(kd, "coord.key"), "--allow", os.path.join(kd, "allow")])
    badw = FakeWorker(c.endpoint, "intruder", curve=keys("bad") + (server_pub,), time_limit=4)
    badw.start()
    badw.join(6)
    check(not badw.welcomed and not badw.sent_hosts, "CURVE: worker with an unknown key is refused")
    out = subprocess.run([binary, "status", "--connect", c.endpoint, "--key",
                          os.path.join(kd, "good.key"), "--server-key", os.path.join(kd, "coord.pub")],
                         capture_output=True, text=True, timeout=15)
    check(out.returncode == 0 and "hosts:" in out.stdout, "CURVE: status with an allowed key works")
    goodw = FakeWorker(c.endpoint, "member", curve=keys("good") + (server_pub,))
    goodw.start()
    rc = c.wait(30)
    check(goodw.welcomed and rc == 0 and len(hosts_of_xml(xml6)) == 8,
          "CURVE: allowed worker completes the scan")

    # 7. Real workers, when the build has them: same XML as `nsefleet scan`.
    try:
        probe = subprocess.run([binary, "worker", "--connect", "tcp://127.0.0.1:9", "--insecure"],
                               capture_output=True, text=True, timeout=3).stderr
    except subprocess.TimeoutExpired:
        probe = ""  # a real worker waits for its coordinator
    if "not available" in probe:
        info("real workers skipped: `nsefleet worker` not in this build yet")
    else:
        real_workers(binary, work, Coord, hosts_of_xml, mask)

    plan_only(binary, work, Coord)

    if not testkit.failed:
        shutil.rmtree(work, ignore_errors=True)


def plan_only(binary, work, Coord):
    # The planning benchmark's pieces (tools/bench PLAN): a --plan-only coordinator over a /18
    # and one --sink worker that acknowledges every lease without scanning.
    n = 1 << 14
    c = Coord(os.path.join(work, "plan"), ["-sT", "-Pn", "-n", "-p", "80", "--max-hostgroup", "256",
                                           "--stats-every", "1h", "127.0.0.0/18"], extra=["--plan-only"])
    sink = subprocess.Popen([binary, "worker", "--connect", c.endpoint, "--insecure", "--sink",
                             "--engines", "4", "--name", "sink"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rc = c.wait(120)
    try:
        src = sink.wait(timeout=15)
    except subprocess.TimeoutExpired:
        sink.kill()
        src = sink.wait()
    err = c.stderr()
    check(rc == 0 and src == 0, "plan-only: coordinator and sink worker exit 0 (rc=%s, sink=%s)" % (rc, src))
    check("%d/%d hosts completed" % (n, n) in err,
          "plan-only: every one of %d hosts leased and acknowledged" % n)


def real_workers(binary, work, Coord, hosts_of_xml, mask):
    args = ["-sT", "-Pn", "-n", "-p", "21,22,80,443,6379,9", "--max-hostgroup", "4",
            "--script", "banner"]
    targets = ["127.0.2.1-24"]
    ref = os.path.join(work, "ref.xml")
    r = subprocess.run([binary, "scan"] + args + ["-oX", ref] + targets, capture_output=True,
                       timeout=300)
    check(r.returncode == 0, "reference `nsefleet scan` runs")

    def workers(endpoint, n):
        return [subprocess.Popen([binary, "worker", "--connect", endpoint, "--insecure",
                                  "--engines", "1"], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(work, "w%d.log" % i), "w"))
                for i in range(n)]

    def stop(ps):
        testkit.reap(ps, 10)

    # 3 real workers.
    out = os.path.join(work, "real.xml")
    c = Coord(os.path.join(work, "r1"), args + ["-oX", out] + targets, lease="3s")
    ps = workers(c.endpoint, 3)
    rc = c.wait(120)
    stop(ps)
    check(rc == 0, "real workers: scan completes (rc=%s)" % rc)
    same = os.path.exists(out) and mask(open(out).read()).replace(out, "O") == \
        mask(open(ref).read()).replace(ref, "O")
    check(same, "real workers: XML equals `nsefleet scan`'s (times masked)")

    # kill -9 a real worker mid-group.
    out = os.path.join(work, "real2.xml")
    c = Coord(os.path.join(work, "r2"), args + ["-oX", out] + targets, lease="2s")
    ps = workers(c.endpoint, 3)
    time.sleep(3)
    ps[0].send_signal(signal.SIGKILL)
    # A hang guard, not a speed goal: each 4-host group spends ~30 s in banner (10 s for a
    # greeting on HTTP/Redis ports, then its TLS attempt), and 2 workers are left for 6 groups.
    rc = c.wait(300)
    stop(ps)
    got, want = hosts_of_xml(out), hosts_of_xml(ref)
    check(rc == 0 and got == want,
          "real workers: kill -9 of a worker mid-scan, every host exactly once (rc=%s, %d of %d "
          "hosts)" % (rc, len(got), len(want)), c.stderr()[-1500:] if rc != 0 else "")


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, NS, 900, "fleet tests")
