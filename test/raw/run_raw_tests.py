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
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check, script_block  # noqa: E402

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


def setup():
    testkit.ns_add(NS_A, ipv6=False)
    testkit.ns_add(NS_B, ipv6=False)
    for a, b, (ip_a, ip_b) in ((A1, B1, NET1), (A2, B2, NET2)):
        testkit.veth(a, NS_A, [ip_a + "/24"], b, NS_B, [ip_b + "/24"])


def run_script(binary, name, args):
    cmd = testkit.ns_argv(NS_A, [binary, "scan", "-Pn", "-n", "-sn", "--script",
                                 os.path.join(HERE, name + ".nse"), "--script-args", args,
                                 "127.0.0.1"])
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        out, err = r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = "timed out"
    lines = script_block(out, name)
    testkit.info(f"{name}: {time.monotonic() - t0:.2f} s")
    if not lines:
        print(out)
        print(err, file=sys.stderr)
    return lines


def script_checks(name, lines):
    """One result per line the test script printed ("ok <check>", "FAIL <check>: <why>", and
    "done" at its end), then one for its having reached the end."""
    for l in lines:
        what = l[3:] if l.startswith("ok ") else l[5:] if l.startswith("FAIL ") else l
        check(l.startswith("ok ") or l == "done", f"{name}: {what}")
    check("done" in lines, f"{name} finished")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    can, why = testkit.ns_can_create(NS_A)
    if not can:
        testkit.info(f"skipped: raw packet tests: {why}")
        return 77

    try:
        setup()
        # ARP + ICMP over dnet Ethernet, replies through pcap (hash form and 7.93 form).
        script_checks("raw_ethernet", run_script(binary, "raw_ethernet",
                                                 f"raw.dev={A1},raw.peer={NET1[1]}"))

        # ip_send: the peer namespace captures the UDP datagram.
        marker = f"nsefleet-raw-{TAG}-{int(time.time())}"
        cap = subprocess.Popen(testkit.ns_argv(NS_B, [sys.executable, "-c", CAPTURE, B2, marker,
                                                      "30"]), stdout=subprocess.PIPE, text=True)
        try:
            check(cap.stdout.readline().strip() == "ready", "peer capture started")
            script_checks("raw_ip", run_script(
                binary, "raw_ip", f"raw.dev={A2},raw.peer={NET2[1]},raw.marker={marker}"))
            got = cap.stdout.readline().split()
            want_src = socket.inet_aton(NET2[0]).hex()
            want_dst = socket.inet_aton(NET2[1]).hex()
            check(got[:1] == ["captured"] and got[2:4] == [want_src, want_dst],
                  "peer captured the ip_send datagram", f"capture: {got}")
        finally:
            if cap.poll() is None:
                cap.kill()
            cap.wait(timeout=10)
    finally:
        testkit.ns_delete(NS_A, NS_B)
        check(testkit.ns_gone(NS_A, NS_B), "namespaces deleted")
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
