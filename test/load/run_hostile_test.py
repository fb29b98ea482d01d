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
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
NS = f"nsefleet-hostile-{os.getpid()}"
PORTS = {"http": 80, "flood": 7001, "line": 7002, "bomb": 7003, "silent": 7004, "reset": 7005}
SCRIPTS = ["http-title"] + [os.path.join(HERE, f"hostile_{n}.nse")
                            for n in ("greedy", "lines", "bomb", "silent", "resets")]


check = testkit.check


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
        check(False, "needs root (network namespace)")
        return testkit.summary()
    servers = None
    try:
        testkit.ns_add(NS)
        servers = subprocess.Popen(
            testkit.ns_argv(NS, [sys.executable, os.path.join(HERE, "hostile_servers.py")]
                            + [f"{k}={v}" for k, v in PORTS.items()]),
            stdout=subprocess.PIPE, text=True)
        line = servers.stdout.readline().strip()
        check(line == "ready", "hostile servers start", line)
        with tempfile.TemporaryDirectory() as tmp:
            xml = os.path.join(tmp, "out.xml")
            tfile = os.path.join(tmp, "time")
            args = ",".join(f"hostile.{k}={v}" for k, v in PORTS.items() if k != "http")
            cmd = testkit.ns_argv(NS, [
                "/usr/bin/time", "-o", tfile, "-f", "%M",
                binary, "scan", "-v", "-sT", "-Pn", "-n", "--engine-memory", "256",
                "-p", ",".join(str(p) for p in PORTS.values()),
                "--script", ",".join(SCRIPTS), "--script-args", args, "-oX", xml, "127.0.0.1"])
            t0 = time.time()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                check(False, "scan finishes", "still running after 300 s")
                return testkit.summary()
            wall = time.time() - t0
            check(r.returncode == 0, "scan exits 0", f"exit {r.returncode}: {r.stderr[-800:]}")
            try:
                rss_kb = int(open(tfile).read().split()[-1])
            except (OSError, ValueError, IndexError):
                rss_kb = -1
            testkit.info(f"wall {wall:.1f} s, peak RSS {rss_kb / 1024:.0f} MB")
            check(0 < rss_kb < 1200 * 1024, "peak RSS under 1.2 GB", f"{rss_kb} kB")
            outs = script_outputs(xml) if os.path.exists(xml) else {}
            check(bool(outs), "report written", "no script results in the XML")
            get = lambda p, s: outs.get((PORTS[p], s)) or ""
            check("Hostile Lab Title" in get("http", "http-title"), "http-title result present",
                  get("http", "http-title"))
            check(get("flood", "hostile_greedy") == "receive failed: not enough memory",
                  "receive_bytes(2e9) on a stream fails for memory",
                  get("flood", "hostile_greedy"))
            check(get("line", "hostile_lines") == "receive failed: not enough memory",
                  "receive_lines on an endless line fails for memory",
                  get("line", "hostile_lines"))
            bomb = get("bomb", "hostile_bomb")
            check("one-shot failed:" in bomb and "not enough memory" in bomb.split(";")[1],
                  "zlib bomb: one-shot decompression fails for memory", bomb)
            check("stream failed:" in bomb and "not enough memory" in bomb.split(";")[2],
                  "zlib bomb: stream decompression fails for memory", bomb)
            check(get("silent", "hostile_silent") == "receive: nil TIMEOUT", "silent server: TIMEOUT",
                  get("silent", "hostile_silent"))
            check(get("reset", "hostile_resets") == "1000 of 1000 connections ended",
                  "1000 resets: every connection ends",
                  get("reset", "hostile_resets"))
            check("memory limit reached" in r.stderr, "memory-limit losses reported at -v",
                  r.stderr[-400:])
            check("may be missing: an engine reached its memory limit" in r.stdout,
                  "memory-limit losses counted before the end line", r.stdout[-400:])
            # Results the fleet wire cannot carry: the host still arrives, with the reason.
            xml2 = os.path.join(tmp, "huge.xml")
            r2 = subprocess.run(testkit.ns_argv(NS, [
                binary, "scan", "-sn", "-Pn", "-n", "--script", os.path.join(HERE, "hostile_huge.nse"),
                "-oX", xml2, "127.0.0.1-3"]), capture_output=True, text=True, timeout=120)
            check(r2.returncode == 0, "too-large results: scan exits 0", r2.stderr[-300:])
            huge = {}
            if os.path.exists(xml2):
                for h in ET.parse(xml2).getroot().iter("host"):
                    for sc in h.iter("script"):
                        huge[h.find("address").get("addr")] = sc.get("output") or ""
            check(huge.get("127.0.0.1", "").startswith("ERROR: Script result too large for the fleet wire"),
                  "too-large result becomes the script's error",
                  huge.get("127.0.0.1", "")[:120])
            check("bottom" in huge.get("127.0.0.2", ""), "too-deep result arrives (as text)",
                  huge.get("127.0.0.2", "")[-120:])
            check(huge.get("127.0.0.3") == "small result", "other hosts unaffected", str(huge.get("127.0.0.3")))
    finally:
        if servers:
            servers.kill()
            servers.wait()
        testkit.ns_delete(NS)
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
