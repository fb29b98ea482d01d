#!/usr/bin/python3
"""Authenticated is not all-powerful: a real `nsefleet coordinator` and fake workers written
here (pyzmq + msgpack, docs/protocol.md). Each check sends what a worker must not be able
to do (results for a lease it does not hold, another worker's lock, more leases than its
engines, oversized keys, anything before Hello) and checks that nothing changed. A lock
taken under a lease that expires goes to the next waiter while its worker is still there.
Then a worker holding a fleet mutex goes silent: the next waiter gets it within --lease-timeout and
the dead worker's condvar waiter is dropped.

The fake workers never scan: only the coordinator's loopback port is used.
Usage: run_auth_tests.py NSEFLEET_BINARY"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402
from testkit import check, free_port  # noqa: E402

import msgpack  # noqa: E402
import zmq  # noqa: E402

HELLO, WELCOME, HEARTBEAT, REQUEST_WORK, LEASE, NO_WORK, LEASE_RENEWED, LEASE_LOST = range(1, 9)
HOST_RESULT, GROUP_DONE, RUN_PHASE, PHASE_RESULT, SHARED_OP, SHARED_REPLY, SHARED_NOTIFY = range(9, 16)
STATUS_QUERY, STATUS_REPLY, ERROR, BYE = range(16, 20)
LOCK, TRYLOCK, UNLOCK, ABANDON, OWNER, WAIT, SIGNAL, BROADCAST, CANCEL = range(1, 10)
NOT_AUTHORIZED, UNKNOWN_LEASE = 5, 6
LEASE_S = 2.0

ctx = zmq.Context()


def pack(t, body, seq=1):
    return msgpack.packb(["nsf", testkit.PROTOCOL, t, seq, body], use_bin_type=False)


def host(index, addr, reason):
    t = time.time()
    return [index, addr, False, "", "", "up", reason, 0, 0.0, "", 0, False, "", "", "", False,
            t, t, [], [], 0, []]


class Peer:
    """One DEALER connection to the coordinator; remembers everything it received."""

    def __init__(self, endpoint, name, engines=1, hello=True):
        self.s = ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.seq = 0
        self.got = []
        self.id = None
        if hello:
            self.send(HELLO, [testkit.PROTOCOL, name, engines, os.getpid(), ["fake"]])
            w = self.wait(WELCOME)
            self.id = w[0] if w else None

    def engine(self, n=1):
        return (self.id << 12) | n

    def send(self, t, body):
        self.seq += 1
        self.s.send(pack(t, body, self.seq))
        return self.seq

    def pump(self, t=0.2):
        end = time.time() + t
        while time.time() < end:
            if self.s.poll(20):
                m = msgpack.unpackb(self.s.recv(), raw=False, strict_map_key=False)
                self.got.append((m[2], m[4]))

    def wait(self, want, t=3.0, pred=None):
        """The first not yet consumed message of type `want` (matching pred), or None."""
        end = time.time() + t
        while True:
            for i, (ty, body) in enumerate(self.got):
                if ty == want and (pred is None or pred(body)):
                    del self.got[i]
                    return body
            if time.time() >= end:
                return None
            self.pump(0.05)

    def errors(self, code):
        """Consumes and returns the Error messages with `code` received so far."""
        self.pump(0.3)
        mine = [b for ty, b in self.got if ty == ERROR and b[0] == code]
        self.got = [(ty, b) for ty, b in self.got if not (ty == ERROR and b[0] == code)]
        return mine

    def close(self):
        self.s.close(0)


def status(endpoint):
    p = Peer(endpoint, "status", hello=False)
    p.send(STATUS_QUERY, [True])
    r = p.wait(STATUS_REPLY)
    p.close()
    return r


def leases_of(st, wid):
    return next((w[3] for w in st[8] if w[0] == wid), None) if st else None


def inner(binary):
    work = tempfile.mkdtemp(prefix="auth-")
    port = free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    xml = os.path.join(work, "out.xml")
    log = open(os.path.join(work, "coordinator.log"), "w")
    coord = subprocess.Popen([binary, "coordinator", "--listen", endpoint, "--insecure", "--state",
                              os.path.join(work, "state"), "--lease-timeout", "%gs" % LEASE_S,
                              "-sT", "-Pn", "-n", "-p", "80", "--max-hostgroup", "2", "-oX", xml,
                              "127.0.1.1-8"], stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(0.4)
    peers = []
    try:
        # ---- before Hello: nothing but an error
        stranger = Peer(endpoint, "stranger", hello=False)
        peers.append(stranger)
        stranger.send(HOST_RESULT, [1, host(0, "127.0.1.1", "stranger")])
        stranger.send(SHARED_OP, [1, LOCK, "s:k", [1 << 12 | 1, 1], None, 0, 0, 0])
        stranger.send(REQUEST_WORK, [1])
        check(len(stranger.errors(NOT_AUTHORIZED)) == 3 and not any(t == LEASE for t, _ in stranger.got),
              "before Hello: every message answered 'say Hello first', no lease")
        check("bad frame" not in open(log.name).read(),
              "before Hello: frames not parsed past their envelope (no decode errors logged)")

        a = Peer(endpoint, "A", engines=1)
        b = Peer(endpoint, "B", engines=1)
        peers += [a, b]
        check(a.id and b.id and a.id != b.id, "two workers welcomed")

        # ---- no more leases than engines, however often it asks
        a.send(REQUEST_WORK, [8])
        a.send(REQUEST_WORK, [8])
        a.send(REQUEST_WORK, [8])
        first = a.wait(LEASE)
        a.pump(0.5)
        extra = [bd for ty, bd in a.got if ty == LEASE]
        st = status(endpoint)
        check(first is not None and not extra and leases_of(st, a.id) == [first[0]],
              "a 1-engine worker asking 3 times for 8 holds one lease (%s, extra %d)"
              % (leases_of(st, a.id), len(extra)))
        gid, hosts = first[0], first[3]

        # ---- B speaks for A's lease: host result, group done
        b.send(HOST_RESULT, [gid, host(hosts[0][0], hosts[0][1], "forged-by-b")])
        check(len(b.errors(UNKNOWN_LEASE)) == 1, "B's host result for A's group is refused")
        b.send(GROUP_DONE, [gid, len(hosts), 0.1])
        lost = b.wait(LEASE_LOST)
        st = status(endpoint)
        check(lost is not None and lost[0] == gid and st[3] == 0 and st[6] == 0 and
              leases_of(st, a.id) == [gid],
              "B's GroupDone for A's group: LeaseLost to B, nothing done, A keeps the lease")

        # ---- B acts for A's engine, oversized keys
        a.send(SHARED_OP, [1, LOCK, "s:k", [a.engine(), 7], None, 0, 0, 0])
        g = a.wait(SHARED_NOTIFY)
        check(g is not None and g[1] == 1, "A's engine locks s:k")
        b.send(SHARED_OP, [2, UNLOCK, "s:k", [a.engine(), 7], None, 0, 0, 0])
        b.send(SHARED_OP, [3, ABANDON, "s:k", [a.engine(), 7], None, 0, 0, 0])
        b.send(SHARED_OP, [4, LOCK, "s:other", [a.engine(), 8], None, 0, 0, 0])
        b.send(SHARED_OP, [5, LOCK, "s:other", [b.engine(2), 8], None, 0, 0, 0])  # B has 1 engine
        b.send(SHARED_OP, [6, TRYLOCK, "s:" + "x" * 5000, [b.engine(), 8], None, 0, 0, 0])
        refused = b.errors(NOT_AUTHORIZED)
        b.send(SHARED_OP, [7, OWNER, "s:k", [0, 0], None, 0, 0, 0])
        owner = b.wait(SHARED_REPLY, pred=lambda r: r[0] == 7)
        b.send(SHARED_OP, [8, OWNER, "s:other", [0, 0], None, 0, 0, 0])
        other = b.wait(SHARED_REPLY, pred=lambda r: r[0] == 8)
        check(len(refused) == 5, "B's ops for A's engine, a 2nd engine it lacks and a 5000-byte key "
              "are refused (%d of 5)" % len(refused))
        check(owner is not None and owner[2] == [[a.engine(), 7]] and other is not None and other[2] == [],
              "A still owns s:k and nobody took s:other (%s, %s)" % (owner and owner[2], other and other[2]))

        # ---- A finishes its group; a forged copy after that changes nothing either
        for h in hosts:
            a.send(HOST_RESULT, [gid, host(h[0], h[1], "user-set")])
        a.send(GROUP_DONE, [gid, len(hosts), 0.1])
        a.pump(0.3)
        b.send(HOST_RESULT, [gid, host(hosts[0][0], hosts[0][1], "forged-by-b")])
        check(len(b.errors(UNKNOWN_LEASE)) == 1, "a forged result for a finished group is refused")
        st = status(endpoint)
        check(st[3] == len(hosts) and st[6] == 1, "A's group committed (%s hosts, %s groups done)"
              % (st[3], st[6]))

        # ---- A holds s:k and waits on cv; B waits on cv first and queues for s:k; A goes silent
        b.send(SHARED_OP, [20, WAIT, "s:cv", [b.engine(), 30], None, 0, 0, 0])
        time.sleep(0.1)
        a.send(SHARED_OP, [21, WAIT, "s:cv", [a.engine(), 31], None, 0, 0, 0])
        b.send(SHARED_OP, [22, LOCK, "s:k", [b.engine(), 32], None, 0, 0, 0])
        a.pump(0.2)
        last_a = time.time()
        a.close()
        granted = None
        end = last_a + LEASE_S + 3
        while time.time() < end and granted is None:
            b.send(HEARTBEAT, [time.time(), [], 0])
            granted = b.wait(SHARED_NOTIFY, 0.1, pred=lambda n: n[0] == 22)
        took = time.time() - last_a
        # The coordinator checks leases once a second: allow one tick past the timeout.
        check(granted is not None and took <= LEASE_S + 1.2,
              "silent A's mutex goes to B within --lease-timeout %gs (+1 s tick): %.2f s" % (LEASE_S, took))
        b.send(SHARED_OP, [23, SIGNAL, "s:cv", [0, 0], None, 0, 0, 0])
        woke = b.wait(SHARED_NOTIFY, 2.0, pred=lambda n: n[0] == 20)
        check(woke is not None and woke[1] == 2,
              "A's condvar waiter was dropped: one signal wakes B (LIFO would have picked A)")
        b.send(SHARED_OP, [24, UNLOCK, "s:k", [b.engine(), 32], None, 0, 0, 0])
        r = b.wait(SHARED_REPLY, pred=lambda r: r[0] == 24)
        check(r is not None and r[1] is True, "B unlocks: no deadlock")
        # ---- locks belong to (lease, thread): C's lease expires while C stays alive
        c = Peer(endpoint, "C", engines=1)
        peers.append(c)
        c.send(REQUEST_WORK, [1])
        lease_c = c.wait(LEASE)
        check(lease_c is not None, "C leased a group")
        if lease_c:
            c.send(SHARED_OP, [1, LOCK, "s:lease", [c.engine(), 5], None, 0, lease_c[0], 0])
            check(c.wait(SHARED_NOTIFY) is not None, "C's thread locks s:lease under its lease")
            b.send(SHARED_OP, [30, LOCK, "s:lease", [b.engine(), 40], None, 0, 0, 0])
            t0 = time.time()
            got = None
            while time.time() - t0 < LEASE_S + 3 and got is None:
                # C and B stay alive, but C's heartbeats no longer list its group.
                c.send(HEARTBEAT, [time.time(), [], 0])
                b.send(HEARTBEAT, [time.time(), [], 0])
                got = b.wait(SHARED_NOTIFY, 0.2, pred=lambda n: n[0] == 30)
            check(got is not None and "lease of group %d expired" % lease_c[0] in open(log.name).read(),
                  "C's lease expired and its lock went to B after %.1f s, C still connected"
                  % (time.time() - t0))
            b.send(SHARED_OP, [31, UNLOCK, "s:lease", [b.engine(), 40], None, 0, 0, 0])
            r = b.wait(SHARED_REPLY, pred=lambda r: r[0] == 31)
            check(r is not None and r[1] is True, "B owned s:lease and unlocked it")

        check(coord.poll() is None, "coordinator still running")
    finally:
        for p in peers:
            p.close()
        coord.send_signal(signal.SIGTERM)
        testkit.reap([coord], 15)
        log.close()
        if not testkit.failed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(open(log.name).read()[-3000:])


if __name__ == "__main__":
    inner(sys.argv[1])
    sys.exit(testkit.summary())
