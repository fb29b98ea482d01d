"""A minimal fake fleet coordinator for testing `nsefleet worker` on its own.

It speaks the wire protocol of docs/protocol.md (MessagePack envelopes over a ZeroMQ ROUTER on
127.0.0.1), records every message a worker sends, and implements the shared-state service
(FIFO mutexes, LIFO condvars, registry) the way the protocol describes. Tests drive it from
their own thread: `poll()` receives and answers shared-state ops; everything else is up to the
test (`send`, `wait_for`).
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from testkit import PROTOCOL, ROOT  # noqa: E402  (PROTOCOL: the version the fake coordinator speaks)

# Debian's python3-zmq / python3-msgpack live in the system interpreter; a pyenv shim may
# shadow it.
try:
    import msgpack
    import zmq
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

T = dict(Hello=1, Welcome=2, Heartbeat=3, RequestWork=4, Lease=5, NoWork=6, LeaseRenewed=7,
         LeaseLost=8, HostResult=9, GroupDone=10, RunPhase=11, PhaseResult=12, SharedOp=13,
         SharedReply=14, SharedNotify=15, StatusQuery=16, StatusReply=17, Error=18, Bye=19)
NAME = {v: k for k, v in T.items()}
OP = dict(MutexLock=1, MutexTrylock=2, MutexUnlock=3, MutexAbandon=4, MutexOwner=5, CondWait=6,
          CondSignal=7, CondBroadcast=8, CondCancel=9, RegistryMerge=10, RegistryChanges=11,
          TargetCounts=12)

# Defaults for every ScanOptions field; the field order is read from the codec itself so this
# stays right when a field is added (a field missing here fails loudly).
OPTION_DEFAULTS = dict(
    command_line="nsefleet (fake coordinator)", targets=[], input_files=[], excludes=[],
    exclude_files=[], port_spec="", fast=False, top_ports=0, ports=[], connect_scan=True,
    syn_scan=False, udp_scan=False, skip_discovery=True, ping_only=False, no_dns=True,
    ipv6=False, iface="", source="", scripts=[], default_scripts=False, script_args="",
    script_args_file="", script_timeout=0.0, host_timeout=0.0, max_parallelism=0,
    timing=[3, 1.0, 2, 512, 0.0, 0.1, 10.0, 1.0, 0.0, 0.0, 0, False], verbosity=0, debugging=0, stats_every=0.0, out_normal="",
    out_xml="", out_grepable="", out_json="", open_only=False, reason=False, min_hostgroup=0,
    max_hostgroup=0, datadir="", workers=0, engine_memory_mb=1024, help=False,
    version_scan=False, version_intensity=7, version_trace=False, version_all_ports=False,
    aggressive=False, dns_all=False, system_dns=False, dns_servers="",
    default_scan=False, script_trace=False, discovery=[[], [], [], False, False, False, False],
    list_scan=False, random_targets=-1, resolve_all=False, packet_trace=False, privileged=False,
    unprivileged=False, packet=[-1, -1, 0, False, 0, "", ""], out_skid="", append_output=False,
    stylesheet="file:///usr/share/nmap/nmap.xsl", warnings=[], accepted=[], iflist=False,
    exclude_ports="", servicedb="", versiondb="")


def option_fields():
    src = open(os.path.join(ROOT, "common", "wire", "codec.cc")).read()
    m = re.search(r"void put\(Packer& pk, const common::ScanOptions& o\) \{\s*fields\(pk,(.*?)\);",
                  src, re.S)
    return [f.strip()[2:] for f in m.group(1).split(",")]


def scan_options(**over):
    out = []
    for f in option_fields():
        if f in over:
            out.append(over[f])
        elif f in OPTION_DEFAULTS:
            out.append(OPTION_DEFAULTS[f])
        else:
            raise KeyError("ScanOptions field %r unknown to the fake coordinator" % f)
    return out


def encode(mtype, seq, body):
    return msgpack.packb(["nsf", PROTOCOL, mtype, seq, body], use_bin_type=True)


def decode(frame):
    env = msgpack.unpackb(frame, raw=False, unicode_errors="surrogateescape")
    assert env[0] == "nsf" and env[1] == PROTOCOL, env[:2]
    return env[2], env[3], env[4]


# Value helpers: the wire form of a table is a list of [key or None, value].
def value_to_py(v):
    if isinstance(v, list):
        if all(k is None for k, _ in v):
            return [value_to_py(x) for _, x in v]
        return {k: value_to_py(x) for k, x in v}
    return v


def py_to_value(p):
    if isinstance(p, dict):
        return [[k, py_to_value(x)] for k, x in p.items()]
    if isinstance(p, list):
        return [[None, py_to_value(x)] for x in p]
    return p


def merge(dst, src):
    """Applies a registry delta (tables key by key, keyless items appended, nil removes;
    other values replaced). Integer keys stay key text here: enough for the tests."""
    if not isinstance(dst, list) or not isinstance(src, list):
        return src
    out = [list(e) for e in dst]
    index = {e[0]: i for i, e in enumerate(out) if e[0] is not None}
    for k, v in src:
        if k is None:
            out.append([None, v])
        elif k in index:
            out[index[k]][1] = merge(out[index[k]][1], v)
        else:
            index[k] = len(out)
            out.append([k, v])
    return out


HOST_FIELDS = ["index", "address", "ipv6", "targetname", "hostname", "status", "reason",
               "reason_ttl", "srtt", "interface", "interface_mtu", "directly_connected",
               "source_address", "mac_address", "source_mac", "timed_out", "start_time", "end_time", "ports", "hostscripts", "lost_results", "other_addresses"]


def host_dict(h):
    d = dict(zip(HOST_FIELDS, h))
    d["ports"] = [dict(number=p[0], protocol=p[1], state=p[2], reason=p[3],
                       scripts={s[0]: s[1] for s in p[6]}) for p in d["ports"]]
    d["hostscripts"] = {s[0]: s[1] for s in d["hostscripts"]}
    return d


class FakeCoordinator:
    def __init__(self, heartbeat_ms=200, lease_ms=3000):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.heartbeat_ms, self.lease_ms = heartbeat_ms, lease_ms
        self.peer = None
        self.seq = 0
        self.log = []          # (time, type name, body) of everything received
        self.shared_log = []   # (op name, key, who) of every SharedOp
        self.answer_shared = True
        # shared state
        self.mutex = {}    # key -> [owner (tuple) or None, [(who, request_id), ...]]
        self.cond = {}     # key -> [(who, request_id), ...]
        self.registry = None
        self.registry_log = []  # (engine, delta) in merge order; version = position + 1

    def close(self):
        self.sock.close(0)
        self.ctx.term()

    def send(self, name, body, peer=None):
        self.seq += 1
        self.sock.send_multipart([peer or self.peer, encode(T[name], self.seq, body)])

    def send_raw(self, payload):
        self.sock.send_multipart([self.peer, payload])

    def welcome(self, worker_id=5, scan_id="fake-scan", **opts):
        self.send("Welcome", [worker_id, scan_id, self.heartbeat_ms, self.lease_ms,
                              scan_options(**opts)])

    def poll(self, timeout=0.05):
        """Receives at most one message; answers SharedOps; returns (name, body) or None."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        peer, frame = self.sock.recv_multipart()
        mtype, _, body = decode(frame)
        if self.peer is None:
            self.peer = peer
        name = NAME.get(mtype, str(mtype))
        self.log.append((time.time(), name, body))
        if name == "SharedOp" and self.answer_shared:
            self.shared(body)
        return name, body

    def wait_for(self, name, timeout=10.0, pred=None):
        """Polls until a message `name` (matching pred) arrives; returns its body or None."""
        end = time.time() + timeout
        while time.time() < end:
            m = self.poll(min(0.05, max(0.0, end - time.time())))
            if m and m[0] == name and (pred is None or pred(m[1])):
                return m[1]
        return None

    def received(self, name):
        return [b for _, n, b in self.log if n == name]

    # ---- the shared-state service
    def shared(self, body):
        rid, op, key, who, value, since, lease, part = body
        who = tuple(who)
        opname = {v: k for k, v in OP.items()}[op]
        self.shared_log.append((opname, key, who))

        def reply(ok, owner=None, val=None, version=0, snapshot=False, deltas=()):
            self.send("SharedReply", [rid, ok, [] if owner is None else [list(owner)], val,
                                      version, snapshot, list(deltas), 0, 1, 0, 0])

        def grant(key, who, rid):
            self.send("SharedNotify", [rid, 1, key, list(who)])

        m = self.mutex.setdefault(key, [None, []]) if op <= OP["MutexOwner"] else None

        def release():
            m[0] = None
            if m[1]:
                nxt, nrid = m[1].pop(0)
                m[0] = nxt
                grant(key, nxt, nrid)

        if op == OP["MutexLock"]:
            if m[0] is None:
                m[0] = who
                grant(key, who, rid)
            else:
                m[1].append((who, rid))
        elif op == OP["MutexTrylock"]:
            ok = m[0] is None
            if ok:
                m[0] = who
            reply(ok)
        elif op == OP["MutexUnlock"]:
            ok = m[0] == who
            if ok:
                release()
            reply(ok)
        elif op == OP["MutexAbandon"]:
            if m[0] == who:
                release()
            else:
                m[1] = [(w, r) for w, r in m[1] if w != who]
        elif op == OP["MutexOwner"]:
            reply(True, owner=m[0])
        elif op == OP["CondWait"]:
            self.cond.setdefault(key, []).append((who, rid))
        elif op == OP["CondSignal"]:
            q = self.cond.get(key, [])
            if q:
                w, r = q.pop()
                self.send("SharedNotify", [r, 2, key, list(w)])
        elif op == OP["CondBroadcast"]:
            q = self.cond.pop(key, [])
            for w, r in reversed(q):
                self.send("SharedNotify", [r, 2, key, list(w)])
        elif op == OP["CondCancel"]:
            self.cond[key] = [(w, r) for w, r in self.cond.get(key, []) if w != who]
        elif op == OP["RegistryMerge"]:
            self.registry = merge(self.registry, value)
            self.registry_log.append((who[0], value))
            reply(True)
        elif op == OP["TargetCounts"]:
            reply(True)  # no targets are added in these tests
        elif op == OP["RegistryChanges"]:
            version = len(self.registry_log)
            if since == 0 or since > version:
                reply(True, val=self.registry, version=version, snapshot=True)
            else:
                reply(True, version=version,
                      deltas=[v for e, v in self.registry_log[since:] if e != who[0]])
