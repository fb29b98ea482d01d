#!/usr/bin/env python3
"""Raw scans (issue 5): -sS, -sU and root host discovery compared with nmap 7.93, in namespaces.

  test/raw/run_scan_tests.py [--binary build/nsefleet]

Topology (IPv6 off, no default route anywhere, namespaces deleted at the end):
  scanner S  198.51.100.1/24 --veth-- 198.51.100.2/24 (+ .4)  target/router T
  T          203.0.113.1/24  --veth-- 203.0.113.2, .3, .6     far hosts F
  S routes 203.0.113.0/24 via 198.51.100.2 (T forwards).
T runs python TCP/UDP listeners; nftables in T drops or rejects some ports, so the target has
open, closed and filtered ports of both protocols. nsefleet and nmap scan the same ports from S
(-oX), and the tests compare them port by port (state and reason); then host discovery (-sn)
over 198.51.100.0/29 (ARP, directly connected) and 203.0.113.0/29 (ICMP/TCP via T) must give
nmap's up set. Last, an unprivileged -sS falls back to -sT with a warning. Needs root; exits 77
(skipped) when namespaces cannot be created. Prints "N passed, M failed".
"""
import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check, nsx as nx  # noqa: E402

TAG = f"{os.getpid() % 100000}"
NS_S, NS_T, NS_F = f"nsf-syn-s{TAG}", f"nsf-syn-t{TAG}", f"nsf-syn-f{TAG}"
S1, T1, T2, F2 = f"nss{TAG}", f"nst{TAG}", f"nsu{TAG}", f"nsf{TAG}"
TARGET = "198.51.100.2"

TCP_OPEN = [22, 80, 8080]
TCP_DROP = [81, 8081]
TCP_REJECT = [82]          # icmp admin-prohibited
UDP_OPEN = [53, 161]
UDP_DROP = [123]
UDP_REJECT = [69]
PORTS = "T:21-23,79-82,443,8080-8082,U:53,67-69,123,161,514"

LISTENERS = r"""
import socket, sys, threading, time
tcp, udp = [int(p) for p in sys.argv[1].split(",")], [int(p) for p in sys.argv[2].split(",")]
socks = []
for p in tcp:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(128); socks.append(s)
def serve_udp(s):
    while True:
        data, addr = s.recvfrom(4096)
        s.sendto(b"pong" + data[:16], addr)
for p in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", p))
    threading.Thread(target=serve_udp, args=(s,), daemon=True).start()
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
"""

# Prints "SRC-MAC DST-ADDR:PORT" for each TCP SYN frame arriving on interface argv[1].
SNIFF_SYN = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
        continue
    ihl = (f[14] & 15) * 4
    tcp = f[14 + ihl:]
    if len(tcp) >= 14 and tcp[13] & 0x12 == 0x02:
        print(f[6:12].hex(":"), "%s:%d" % (socket.inet_ntoa(f[30:34]), struct.unpack("!H", tcp[2:4])[0]), flush=True)
"""
SPOOF = "02:5e:ed:00:be:ef"


def setup():
    for ns in (NS_S, NS_T, NS_F):
        testkit.ns_add(ns, ipv6=False)
    testkit.veth(S1, NS_S, ["198.51.100.1/24"], T1, NS_T, ["198.51.100.2/24", "198.51.100.4/24"])
    testkit.veth(T2, NS_T, ["203.0.113.1/24"],
                 F2, NS_F, [a + "/24" for a in ("203.0.113.2", "203.0.113.3", "203.0.113.6")])
    nx(NS_S, "ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    nx(NS_F, "ip", "route", "add", "198.51.100.0/24", "via", "203.0.113.1")
    nx(NS_T, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Every closed UDP port must answer, for both scanners alike.
    nx(NS_T, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
    rules = f"""
table inet filt {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {{ {",".join(map(str, TCP_DROP))} }} drop
    tcp dport {{ {",".join(map(str, TCP_REJECT))} }} reject with icmp type admin-prohibited
    udp dport {{ {",".join(map(str, UDP_DROP))} }} drop
    udp dport {{ {",".join(map(str, UDP_REJECT))} }} reject with icmp type admin-prohibited
  }}
}}
"""
    nx(NS_T, "nft", "-f", "-", input=rules)


def ports_of(xml_text):
    """{(proto, port): (state, reason)} from nmap-style XML, for the first host."""
    root = ET.fromstring(xml_text)
    out = {}
    for p in root.iter("port"):
        st = p.find("state")
        out[(p.get("protocol"), int(p.get("portid")))] = (st.get("state"), st.get("reason"))
    return out


def up_hosts(xml_text):
    root = ET.fromstring(xml_text)
    ups = set()
    for h in root.iter("host"):
        if h.find("status").get("state") == "up":
            ups.add(h.find("address").get("addr"))
    return ups


def host_elem(xml_text, addr):
    for h in ET.fromstring(xml_text).iter("host"):
        if h.find("address").get("addr") == addr:
            return h
    return None


def run_scan(cmd, limit=120):
    t0 = time.monotonic()
    r = subprocess.run(testkit.ns_argv(NS_S, cmd), capture_output=True, text=True, timeout=limit)
    return r, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    can, why = testkit.ns_can_create(NS_S)
    if not can:
        testkit.info(f"skipped: raw scan tests: {why}")
        return 77

    listeners = None
    try:
        setup()
        listeners = subprocess.Popen(
            testkit.ns_argv(NS_T, [sys.executable, "-c", LISTENERS, ",".join(map(str, TCP_OPEN)),
                                   ",".join(map(str, UDP_OPEN)), "300"]),
            stdout=subprocess.PIPE, text=True)
        check(listeners.stdout.readline().strip() == "ready", "listeners started in target")

        # ---- -sS and -sU, port by port against nmap
        common = ["-n", "-T4", "--reason", "-p", PORTS, "-oX", "-", TARGET]
        ours, t_ours = run_scan([binary, "scan", "-sS", "-sU"] + common)
        theirs, t_nmap = run_scan(["nmap", "-sS", "-sU"] + common)
        check(ours.returncode == 0, f"nsefleet -sS -sU exits 0 ({t_ours:.2f}s): {ours.stderr.strip()[:300]}")
        check(theirs.returncode == 0, f"nmap -sS -sU exits 0 ({t_nmap:.2f}s)")
        a, b = ports_of(ours.stdout), ports_of(theirs.stdout)
        check(len(b) == 18, f"nmap reports all 18 ports ({len(b)})")
        for key in sorted(b):
            check(a.get(key) == b[key], f"{key[0]}/{key[1]}: nsefleet {a.get(key)} nmap {b[key]}")
        extra = set(a) - set(b)
        check(not extra, f"no ports beyond nmap's: {sorted(extra)}")
        expect = {("tcp", 22): "open", ("tcp", 81): "filtered", ("tcp", 21): "closed",
                  ("udp", 53): "open", ("udp", 68): "closed", ("udp", 123): "open|filtered",
                  ("udp", 69): "filtered"}
        check(all(a.get(k, ("",))[0] == v for k, v in expect.items()),
               "target really has open, closed and filtered ports of both protocols")
        h = host_elem(ours.stdout, TARGET)
        st = h.find("status") if h is not None else None
        check(st is not None and st.get("reason") == "arp-response",
               f"directly connected target found by ARP ({st.attrib if st is not None else None})")

        # ---- host discovery (-sn): up sets equal nmap's
        for net, how in (("198.51.100.0/29", "ARP"), ("203.0.113.0/29", "ICMP/TCP via router")):
            cmd = ["-sn", "-n", "-T4", "-oX", "-", net]
            # As root, -sn is nmap's raw discovery (nmap refuses -sn with -sS).
            ours, t_ours = run_scan([binary, "scan"] + cmd)
            theirs, t_nmap = run_scan(["nmap"] + cmd)
            ua, ub = up_hosts(ours.stdout) if ours.returncode == 0 else set(), up_hosts(theirs.stdout)
            check(ua == ub and len(ub) >= 2,
                   f"-sn {net} ({how}): nsefleet {sorted(ua)} ({t_ours:.2f}s) "
                   f"nmap {sorted(ub)} ({t_nmap:.2f}s) {ours.stderr.strip()[:200]}")
            if how == "ARP" and ours.returncode == 0:
                reasons = {h.find("address").get("addr"): h.find("status").get("reason")
                           for h in ET.fromstring(ours.stdout).iter("host")
                           if h.find("status").get("state") == "up"}
                check(reasons.get("198.51.100.2") == "arp-response"
                       and reasons.get("198.51.100.1") == "localhost-response",
                       f"ARP and local reasons: {reasons}")
        ours, _ = run_scan([binary, "scan", "-sn", "-n", "-oX", "-", "203.0.113.2"])
        h = host_elem(ours.stdout, "203.0.113.2") if ours.returncode == 0 else None
        reason = h.find("status").get("reason") if h is not None else None
        check(reason in ("echo-reply", "syn-ack", "reset", "timestamp-reply"),
               f"routed host found by an ICMP/TCP probe (reason {reason})")

        # ---- -sS on a routed host (SYN through the router)
        cmd = ["-sS", "-n", "-T4", "-Pn", "-p", "T:21-23,80,81", "-oX", "-", "203.0.113.2"]
        ours, _ = run_scan([binary, "scan"] + cmd)
        theirs, _ = run_scan(["nmap"] + cmd)
        check(ours.returncode == 0 and ports_of(ours.stdout) == ports_of(theirs.stdout),
               f"-sS -Pn via router equals nmap: {ports_of(ours.stdout) if ours.returncode == 0 else ours.stderr}")

        # ---- --spoof-mac: SYNs leave as frames from the given address, on link and via the
        # router, with the neighbour cache emptied first (the scanner asks by ARP itself)
        nx(NS_S, "ip", "neigh", "flush", "all")
        sniffer = subprocess.Popen(testkit.ns_argv(NS_T, [sys.executable, "-c", SNIFF_SYN, T1, "60"]),
                                   stdout=subprocess.PIPE, text=True)
        check(sniffer.stdout.readline().strip() == "ready", "frame sniffer started in target")
        spoofed = {}
        for target in (TARGET, "203.0.113.2"):
            cmd = ["-sS", "-n", "-T4", "-Pn", "-p", "T:21,22,81", "-oX", "-", target]
            ours, _ = run_scan([binary, "scan", "--spoof-mac", SPOOF] + cmd)
            plain, _ = run_scan([binary, "scan"] + cmd)
            spoofed[target] = ours
            check(ours.returncode == 0 and ports_of(ours.stdout) == ports_of(plain.stdout)
                  and len(ports_of(plain.stdout)) == 3,
                  f"--spoof-mac -sS {target}: same ports as without it: "
                  f"{ports_of(ours.stdout) if ours.returncode == 0 else ours.stderr.strip()[:300]}")
        sniffer.kill()
        frames = sniffer.communicate()[0].split("\n")
        for dest in (TARGET + ":22", "203.0.113.2:22"):
            macs = {l.split()[0] for l in frames if l.endswith(" " + dest)}
            check(SPOOF in macs, f"--spoof-mac: SYN frames to {dest} come from {SPOOF} ({sorted(macs)})")
        # An on-link address nobody holds: no ARP answer, so no probe leaves (a plain IP
        # packet would carry our own MAC); the scan ends with the port filtered and a warning.
        empty, took = run_scan([binary, "scan", "--spoof-mac", SPOOF, "-sS", "-n", "-Pn", "-p", "22,80",
                                "-oX", "-", "198.51.100.9"])
        p = ports_of(empty.stdout) if empty.returncode == 0 else {}
        check(p.get(("tcp", 22), ("",))[0] == "filtered" and "no ARP reply from 198.51.100.9" in empty.stderr
              and took < 60, f"--spoof-mac, next hop silent: ports filtered, a warning ({took:.1f}s): "
              f"{p} {empty.stderr.strip()[:200]}")
        text = run_scan([binary, "scan", "--spoof-mac", SPOOF, "-sS", "-n", "-Pn", "-p", "22", TARGET])[0]
        check(f"Spoofing MAC address {SPOOF.upper()} (No registered vendor)" in text.stdout,
              "--spoof-mac: nmap's 'Spoofing MAC address' line", text.stdout[:300])

        # ---- without privileges: warning and connect-scan fallback
        r, _ = run_scan(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         binary, "scan", "-sS", "-Pn", "-n", "-p", "T:21,22", "-oX", "-", TARGET])
        p = ports_of(r.stdout) if r.returncode == 0 else {}
        check("root" in r.stderr and p.get(("tcp", 22), ("",))[0] == "open"
               and p.get(("tcp", 21), ("",))[0] == "closed",
               f"unprivileged -sS warns and falls back to -sT: {r.stderr.strip()[:200]} {p}")
    finally:
        if listeners:
            listeners.kill()
            listeners.wait()
        testkit.ns_delete(NS_S, NS_T, NS_F)
        check(testkit.ns_gone(NS_S, NS_T, NS_F), "namespaces deleted")
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
