#!/usr/bin/env python3
"""Raw packet I/O (issue 5): dnet Ethernet/IP sends and pcap captures, in network namespaces.

  test/raw/run_raw_tests.py [--binary build/nsefleet]

Creates two namespaces joined by two veth pairs (198.51.100.1/24 <-> .2 and
203.0.113.1/24 <-> .2, IPv6 off, no default route), runs test/raw/raw_*.nse with nsefleet
inside the first one (`ip netns exec`), captures in the second one to prove raw IP packets
arrived, and deletes the namespaces at the end. Needs root; exits 77 (skipped) with a message
when the kernel refuses to create namespaces. Prints "N passed, M failed".
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TAG = f"{os.getpid() % 100000}"
NS_A, NS_B = f"nsf-raw-a{TAG}", f"nsf-raw-b{TAG}"
# veth names must stay under 16 bytes
A1, B1, A2, B2 = f"nra1{TAG}", f"nrb1{TAG}", f"nra2{TAG}", f"nrb2{TAG}"
NET1 = ("198.51.100.1", "198.51.100.2")
NET2 = ("203.0.113.1", "203.0.113.2")

CAPTURE = r"""
import socket, sys, time
dev, marker, limit = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((dev, 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.time() + limit
while time.time() < end:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    # IPv4, UDP, our marker in the payload
    if frame[12:14] == b"\x08\x00" and frame[23] == 17 and marker in frame:
        print("captured", len(frame), frame[26:30].hex(), frame[30:34].hex(), flush=True)
        break
else:
    print("nothing", flush=True)
"""


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def script_block(text, name):
    """Result lines of script `name` in nmap-style normal output, prefixes removed."""
    lines, inside = [], False
    for line in text.splitlines():
        m = re.match(r"^\|([ _])(.*)$", line)
        if not inside:
            if m and m.group(2).startswith(name + ":"):
                inside = True
                first = m.group(2)[len(name) + 1:].strip()
                if first:
                    lines.append(first)
                if m.group(1) == "_":
                    break
            continue
        if not m:
            break
        lines.append(m.group(2).strip())
        if m.group(1) == "_":
            break
    return lines


def setup():
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    for ns in (NS_A, NS_B):
        # No IPv6 (no router solicitations or addresses outside the test ranges).
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    for a, b, (ip_a, ip_b) in ((A1, B1, NET1), (A2, B2, NET2)):
        sh("ip", "link", "add", a, "netns", NS_A, "type", "veth", "peer", "name", b, "netns", NS_B)
        sh("ip", "-n", NS_A, "addr", "add", ip_a + "/24", "dev", a)
        sh("ip", "-n", NS_B, "addr", "add", ip_b + "/24", "dev", b)
        sh("ip", "-n", NS_A, "link", "set", a, "up")
        sh("ip", "-n", NS_B, "link", "set", b, "up")


def teardown():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)


def run_script(binary, name, args):
    cmd = ["ip", "netns", "exec", NS_A, binary, "scan", "-Pn", "-n", "-sn",
           "--script", os.path.join(HERE, name + ".nse"), "--script-args", args, "127.0.0.1"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        out, err = r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = "timed out"
    lines = script_block(out, name)
    print(f"# {name}: {time.monotonic() - t0:.2f} s")
    if not lines:
        print(out)
        print(err, file=sys.stderr)
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if os.geteuid() != 0:
        print("SKIP: raw packet tests need root (network namespaces, raw sockets)")
        return 77
    probe = subprocess.run(["ip", "netns", "add", NS_A], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"SKIP: the kernel refuses network namespaces: {probe.stderr.strip()}")
        return 77
    subprocess.run(["ip", "netns", "del", NS_A], capture_output=True)

    passed = failed = 0

    def record(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL", what)

    try:
        setup()
        # ARP + ICMP over dnet Ethernet, replies through pcap (hash form and 7.93 form).
        lines = run_script(binary, "raw_ethernet", f"raw.dev={A1},raw.peer={NET1[1]}")
        for l in lines:
            if l.startswith("ok ") or l == "done":
                passed += 1
            else:
                record(False, f"raw_ethernet: {l}")
        record("done" in lines, "raw_ethernet did not finish")

        # ip_send: the peer namespace captures the UDP datagram.
        marker = f"nsefleet-raw-{TAG}-{int(time.time())}"
        cap = subprocess.Popen(["ip", "netns", "exec", NS_B, sys.executable, "-c", CAPTURE, B2,
                                marker, "30"], stdout=subprocess.PIPE, text=True)
        try:
            record(cap.stdout.readline().strip() == "ready", "peer capture did not start")
            lines = run_script(binary, "raw_ip",
                               f"raw.dev={A2},raw.peer={NET2[1]},raw.marker={marker}")
            for l in lines:
                if l.startswith("ok ") or l == "done":
                    passed += 1
                else:
                    record(False, f"raw_ip: {l}")
            record("done" in lines, "raw_ip did not finish")
            got = cap.stdout.readline().split()
            want_src = socket.inet_aton(NET2[0]).hex()
            want_dst = socket.inet_aton(NET2[1]).hex()
            record(got[:1] == ["captured"] and got[2:4] == [want_src, want_dst],
                   f"peer did not capture the ip_send datagram: {got}")
        finally:
            if cap.poll() is None:
                cap.kill()
            cap.wait(timeout=10)
    finally:
        teardown()
        left = sh("ip", "netns", "list").stdout
        record(NS_A not in left and NS_B not in left, "namespaces left behind")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
