#!/usr/bin/env python3
"""`nsefleet scan` as a process: NDJSON lines appear as hosts finish and normal output in
target order as soon as the hosts before are done (both before the scan ends);
--stats-every prints nmap's Stats/NSE Timing lines (done, pending, estimate) on stdout; --state DIR survives
kill -9 and --resume finishes with the same report; SIGINT without --state exits 130 with a
complete, valid XML report of what was done."""
import difflib
import json
import os
import re
import shutil
import signal
import tempfile
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "nsefleet")
SCRIPT = os.path.join(ROOT, "test", "nse", "runtime_slowhost.nse")


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
    check(p.returncode == 0, "stream: exit 0", err)
    check([a for _, a in hosts] == ["127.0.0.1", "127.0.0.2"], "stream: two host lines", hosts)
    if len(hosts) == 2:
        check(hosts[0][0] < end - 2.0, "stream: fast host written before the slow one finished",
              "first at %.2fs, end %.2fs" % (hosts[0][0], end))
    outs = {o["address"]: o["hostscripts"][0]["output"] for _, o in arrivals
            if o.get("type") == "host" and o.get("hostscripts")}
    check(outs == {"127.0.0.1": "fast 127.0.0.1", "127.0.0.2": "slow 127.0.0.2"},
          "stream: script outputs", outs)


def progress():
    # Four hosts, one at a time, each sleeping 1 s: stats every 1 s must report progress.
    args = [BIN, "scan", "-sn", "-Pn", "-n", "--workers", "1", "--max-hostgroup", "1",
            "--stats-every", "1s", "--script", SCRIPT,
            "--script-args", 'slowhost.hosts="127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4",slowhost.secs=1',
            "127.0.0.1-4"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "progress: exit 0", r.stderr)
    # nmap's form, on stdout: "Stats: 0:00:02 elapsed; 1 hosts completed (1 up), 3 undergoing
    # Script Scan" and "NSE Timing: About 25.00% done; ETC: 10:02 (0:00:03 remaining)".
    lines = [l for l in r.stdout.splitlines() if l.startswith(("Stats:", "NSE Timing:"))]
    check(len([l for l in lines if l.startswith("Stats:")]) >= 2, "progress: stats lines printed",
          r.stdout)
    check(any(re.match(r"Stats: \d+:\d\d:\d\d elapsed; [1-3] hosts completed \([1-3] up\), "
                       r"[1-3] undergoing", l) for l in lines), "progress: done and pending shown",
          lines)
    check(any(re.match(r"NSE Timing: About \d+\.\d\d% done; ETC: \d\d:\d\d \(\d+:\d\d:\d\d "
                       r"remaining\)", l) for l in lines), "progress: estimate shown", lines)
    check(not any(l.startswith("Stats:") for l in r.stderr.splitlines()),
          "progress: nothing of it on stderr", r.stderr)


def ordered_streaming():
    # Two engines: 127.0.0.1 fast, .2 slow (4 s), .3 fast. Normal output on stdout is in target
    # order: .1 is printed at once, .3 only after .2 although it finished long before.
    args = [BIN, "scan", "-sn", "-Pn", "-n", "--workers", "2", "--max-hostgroup", "1",
            "--script", SCRIPT, "--script-args", "slowhost.hosts=127.0.0.2,slowhost.secs=4",
            "127.0.0.1-3"]
    t0 = time.time()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = {}
    for line in p.stdout:
        m = re.match(r"Nmap scan report for (\S+)", line)
        if m:
            seen[m.group(1)] = time.time() - t0
    p.wait(timeout=60)
    end = time.time() - t0
    order = sorted(seen, key=seen.get)
    check(p.returncode == 0, "ordered: exit 0")
    check(order == ["127.0.0.1", "127.0.0.2", "127.0.0.3"], "ordered: target order", seen)
    check(seen.get("127.0.0.1", end) < end - 2.5,
          "ordered: first host printed before the slow one finished", "%s, end %.2f" % (seen, end))


def mask(xml):
    # Times, dates and the command line (output file names) differ between two runs.
    xml = re.sub(r"<!--.*?-->", "", xml)
    xml = re.sub(r'(start|end|time|elapsed|startstr|timestr|srtt|rttvar|to|args|summary)="[^"]*"',
                 r'\1=""', xml)
    return xml


def state_and_resume():
    # Eight hosts one at a time, every one slow (1 s): kill -9 after three are done, then
    # --resume on the same --state must give the report of an uninterrupted run.
    work = tempfile.mkdtemp(prefix="nsefleet-state-")
    hosts = ",".join("127.0.0.%d" % i for i in range(1, 9))
    base = ["-sn", "-Pn", "-n", "--workers", "1", "--max-hostgroup", "1", "--script", SCRIPT,
            "--script-args", 'slowhost.hosts="%s",slowhost.secs=1' % hosts, "127.0.0.1-8"]
    ref = os.path.join(work, "ref.xml")
    r = subprocess.run([BIN, "scan"] + base + ["-oX", ref], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "state: uninterrupted run", r.stderr)
    state = os.path.join(work, "state")
    out = os.path.join(work, "out.xml")
    jl = os.path.join(work, "out.json")
    p = subprocess.Popen([BIN, "scan", "--state", state] + base + ["-oX", out, "-oJ", jl],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline and p.poll() is None:
        part = jl + ".part"  # streamed while the scan runs, renamed at the end
        if os.path.exists(part) and len(re.findall(r'"type": ?"host"', open(part).read())) >= 3:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    check(not os.path.exists(out), "state: XML not left in place by a killed scan")
    # As nmap's --resume: the journal holds the command line (outputs included).
    r = subprocess.run([BIN, "scan", "--state", state, "--resume"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "state: --resume with only --state exits 0", r.stderr)
    empty = os.path.join(work, "empty")
    r = subprocess.run([BIN, "scan", "--state", empty, "--resume"], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode != 0 and "nothing to resume" in r.stderr,
          "state: --resume on a directory without a scan says so", r.stderr)
    a = mask(open(ref).read()) if os.path.exists(ref) else ""
    b = mask(open(out).read()) if os.path.exists(out) else ""
    check(a and a == b, "state: resumed report equals the uninterrupted one",
          "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm=""))[:2000])
    r = subprocess.run([BIN, "scan", "--state", state] + base + ["-oX", out],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "--resume" in r.stderr,
          "state: reusing a state directory without --resume is refused", r.stderr)
    shutil.rmtree(work, ignore_errors=True)


def interrupt():
    # SIGINT mid-scan without --state: exit 130, a complete XML report of the hosts done.
    work = tempfile.mkdtemp(prefix="nsefleet-int-")
    out = os.path.join(work, "out.xml")
    args = [BIN, "scan", "-sn", "-Pn", "-n", "--workers", "1", "--max-hostgroup", "1",
            "--script", SCRIPT, "--script-args", "slowhost.hosts=127.0.0.3,slowhost.secs=30",
            "-oX", out, "127.0.0.1-4"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    check(rc == 130, "interrupt: exit 130", rc)
    text = open(out).read() if os.path.exists(out) else ""
    check(text.rstrip().endswith("</nmaprun>"), "interrupt: XML complete", text[-200:])
    check('addr="127.0.0.1"' in text and 'addr="127.0.0.2"' in text,
          "interrupt: hosts done are reported", text[-400:])
    leftovers = [d for d in os.listdir(tempfile.gettempdir())
                 if d.startswith("nsefleet-scan-%d-" % p.pid)]
    check(not leftovers, "interrupt: no state directory left behind", leftovers)
    shutil.rmtree(work, ignore_errors=True)


streaming()
progress()
ordered_streaming()
state_and_resume()
interrupt()
sys.exit(testkit.summary())
