#!/usr/bin/env python3
"""Progress and streaming: NDJSON lines appear as hosts finish (before the scan ends), and
--stats-every prints hosts done/total with an estimate on stderr."""
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "nsefleet")
SCRIPT = os.path.join(ROOT, "test", "nse", "runtime_slowhost.nse")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS", name)
    else:
        failed += 1
        print("FAIL", name, detail)


def streaming():
    # One engine, groups of one host: 127.0.0.1 is fast, 127.0.0.2 sleeps 3 s.
    args = [BIN, "scan", "-sn", "-Pn", "-n", "--workers", "1", "--max-hostgroup", "1",
            "--script", SCRIPT, "--script-args", "slowhost.hosts=127.0.0.2,slowhost.secs=3",
            "-oJ", "-", "127.0.0.1", "127.0.0.2"]
    t0 = time.time()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals = []
    err = []
    threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True).start()
    for line in p.stdout:
        if line.startswith("{"):
            arrivals.append((time.time() - t0, json.loads(line)))
    p.wait(timeout=60)
    end = time.time() - t0
    hosts = [(t, o["address"]) for t, o in arrivals if o.get("type") == "host"]
    check("stream: exit 0", p.returncode == 0, err)
    check("stream: two host lines", [a for _, a in hosts] == ["127.0.0.1", "127.0.0.2"], hosts)
    if len(hosts) == 2:
        check("stream: fast host written before the slow one finished",
              hosts[0][0] < end - 2.0, "first at %.2fs, end %.2fs" % (hosts[0][0], end))
    outs = {o["address"]: o["hostscripts"][0]["output"] for _, o in arrivals
            if o.get("type") == "host" and o.get("hostscripts")}
    check("stream: script outputs", outs == {"127.0.0.1": "fast 127.0.0.1",
                                             "127.0.0.2": "slow 127.0.0.2"}, outs)


def progress():
    # Four hosts, one at a time, each sleeping 1 s: stats every 1 s must report progress.
    args = [BIN, "scan", "-sn", "-Pn", "-n", "--workers", "1", "--max-hostgroup", "1",
            "--stats-every", "1s", "--script", SCRIPT,
            "--script-args", 'slowhost.hosts="127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4",slowhost.secs=1',
            "127.0.0.1-4"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    check("progress: exit 0", r.returncode == 0, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.startswith("Stats:")]
    check("progress: stats lines printed", len(lines) >= 2, r.stderr)
    check("progress: done/total shown", any("/4 hosts completed" in l for l in lines), lines)
    check("progress: estimate shown", any("remaining" in l for l in lines), lines)


streaming()
progress()
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
