#!/usr/bin/env python3
"""Hostile servers against one engine's memory cap (issue: memory caps that hold).

In a network namespace this test creates (only `lo`), hostile servers (hostile_servers.py)
run beside a well-behaved HTTP server; `nsefleet scan --engine-memory 256` runs http-title on
port 80 and one test script per hostile server (hostile_*.nse). Checks: exit 0; http-title's
result present; the greedy scripts (endless stream to receive_bytes(2e9), endless line to
receive_lines, zlib bomb through both decompression paths) fail softly with "not enough
memory"; the silent server gives TIMEOUT; 1000 reset connections all end; peak RSS under
1.2 GB; the memory-limit losses are reported at -v. Then results the fleet wire cannot carry
(a 20 MiB output, a 300-level structured output): the hosts arrive, the first as the
script's error with the reason, the second as text.

  run_hostile_test.py path/to/nsefleet
Prints a line per check, then "N passed, M failed"; exit 1 on any failure.
"""
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fleet"))
import labrun  # noqa: E402  (ok/FAIL counting shared by the test runners)
NS = f"nsefleet-hostile-{os.getpid()}"
PORTS = {"http": 80, "flood": 7001, "line": 7002, "bomb": 7003, "silent": 7004, "reset": 7005}
SCRIPTS = ["http-title"] + [os.path.join(HERE, f"hostile_{n}.nse")
                            for n in ("greedy", "lines", "bomb", "silent", "resets")]



def check(name, ok, detail=""):
    labrun.check(ok, name + (f" ({detail})" if detail and not ok else ""))


def script_outputs(xml_path):
    out = {}
    root = ET.parse(xml_path).getroot()
    for port in root.iter("port"):
        for sc in port.iter("script"):
            out[(int(port.get("portid")), sc.get("id"))] = sc.get("output")
    return out


def main():
    binary = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        print("run_hostile_test: needs root (network namespace)")
        print("0 passed, 1 failed")
        return 1
    subprocess.run(["ip", "netns", "add", NS], check=True)
    servers = None
    try:
        subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
        servers = subprocess.Popen(
            ["ip", "netns", "exec", NS, sys.executable, os.path.join(HERE, "hostile_servers.py")]
            + [f"{k}={v}" for k, v in PORTS.items()], stdout=subprocess.PIPE, text=True)
        line = servers.stdout.readline().strip()
        check("hostile servers start", line == "ready", line)
        with tempfile.TemporaryDirectory() as tmp:
            xml = os.path.join(tmp, "out.xml")
            tfile = os.path.join(tmp, "time")
            args = ",".join(f"hostile.{k}={v}" for k, v in PORTS.items() if k != "http")
            cmd = ["ip", "netns", "exec", NS, "/usr/bin/time", "-o", tfile, "-f", "%M",
                   binary, "scan", "-v", "-sT", "-Pn", "-n", "--engine-memory", "256",
                   "-p", ",".join(str(p) for p in PORTS.values()),
                   "--script", ",".join(SCRIPTS), "--script-args", args, "-oX", xml, "127.0.0.1"]
            t0 = time.time()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                check("scan finishes", False, "still running after 300 s")
                return 1
            wall = time.time() - t0
            check("scan exits 0", r.returncode == 0, f"exit {r.returncode}: {r.stderr[-800:]}")
            try:
                rss_kb = int(open(tfile).read().split()[-1])
            except (OSError, ValueError, IndexError):
                rss_kb = -1
            print(f"info: wall {wall:.1f} s, peak RSS {rss_kb / 1024:.0f} MB")
            check("peak RSS under 1.2 GB", 0 < rss_kb < 1200 * 1024, f"{rss_kb} kB")
            outs = script_outputs(xml) if os.path.exists(xml) else {}
            check("report written", bool(outs), "no script results in the XML")
            get = lambda p, s: outs.get((PORTS[p], s)) or ""
            check("http-title result present", "Hostile Lab Title" in get("http", "http-title"),
                  get("http", "http-title"))
            check("receive_bytes(2e9) on a stream fails for memory",
                  get("flood", "hostile_greedy") == "receive failed: not enough memory",
                  get("flood", "hostile_greedy"))
            check("receive_lines on an endless line fails for memory",
                  get("line", "hostile_lines") == "receive failed: not enough memory",
                  get("line", "hostile_lines"))
            bomb = get("bomb", "hostile_bomb")
            check("zlib bomb: one-shot decompression fails for memory",
                  "one-shot failed:" in bomb and "not enough memory" in bomb.split(";")[1], bomb)
            check("zlib bomb: stream decompression fails for memory",
                  "stream failed:" in bomb and "not enough memory" in bomb.split(";")[2], bomb)
            check("silent server: TIMEOUT", get("silent", "hostile_silent") == "receive: nil TIMEOUT",
                  get("silent", "hostile_silent"))
            check("1000 resets: every connection ends",
                  get("reset", "hostile_resets") == "1000 of 1000 connections ended",
                  get("reset", "hostile_resets"))
            check("memory-limit losses reported at -v", "memory limit reached" in r.stderr,
                  r.stderr[-400:])
            check("memory-limit losses counted before the end line",
                  "may be missing: an engine reached its memory limit" in r.stdout, r.stdout[-400:])
            # Results the fleet wire cannot carry: the host still arrives, with the reason.
            xml2 = os.path.join(tmp, "huge.xml")
            r2 = subprocess.run(["ip", "netns", "exec", NS, binary, "scan", "-sn", "-Pn", "-n",
                                 "--script", os.path.join(HERE, "hostile_huge.nse"), "-oX", xml2,
                                 "127.0.0.1-3"], capture_output=True, text=True, timeout=120)
            check("too-large results: scan exits 0", r2.returncode == 0, r2.stderr[-300:])
            huge = {}
            if os.path.exists(xml2):
                for h in ET.parse(xml2).getroot().iter("host"):
                    for sc in h.iter("script"):
                        huge[h.find("address").get("addr")] = sc.get("output") or ""
            check("too-large result becomes the script's error",
                  huge.get("127.0.0.1", "").startswith("ERROR: Script result too large for the fleet wire"),
                  huge.get("127.0.0.1", "")[:120])
            check("too-deep result arrives (as text)", "bottom" in huge.get("127.0.0.2", ""),
                  huge.get("127.0.0.2", "")[-120:])
            check("other hosts unaffected", huge.get("127.0.0.3") == "small result", str(huge.get("127.0.0.3")))
    finally:
        if servers:
            servers.kill()
            servers.wait()
        subprocess.run(["ip", "netns", "pids", NS], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS])
    print(f"{labrun.passed} passed, {labrun.failed} failed")
    return 1 if labrun.failed else 0


if __name__ == "__main__":
    sys.exit(main())
