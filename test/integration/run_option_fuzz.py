#!/usr/bin/env python3
"""Random command lines from nmap's option list (flags and values, good and bad) through
`nsefleet scan`, inside a network namespace with only loopback (nothing can leave).

Every run must end by itself (no hang, no signal, no core): either exit 0 with a report, or
exit non-zero with exactly one line on stderr starting "nsefleet: " (the message).

Also `-sL -n -iR 0` (random targets without end, nothing sent, no DNS), stopped by SIGINT:
public addresses, all distinct, and a report whose count matches what it lists.

Usage: run_option_fuzz.py BINARY [RUNS] [SEED]
"""
import ipaddress
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import testkit  # noqa: E402
from testkit import check, info  # noqa: E402

FLAGS = ("-sT -sS -sU -sn -sL -sP -sV -sC -A -Pn -PN -P0 -PE -PP -PM -PR -n -R -6 -F -r -O -v "
         "-vv -d -dd --reason --open --packet-trace --script-trace --version-trace "
         "--version-light --version-all --allports --system-dns --resolve-all --append-output "
         "--webxml --no-stylesheet --badsum --privileged --unprivileged --noninteractive "
         "--traceroute -f -ff --osscan-guess --send-ip --randomize-hosts -sA -sX -b "
         "--no-such-option -Q --").split()
VALUED = {
    "-p": ["1", "1-3", "x", "70000", "U:53,T:1", "-", "", "1,,2", "T:"],
    "-T": ["0", "3", "4", "5", "9", "fast", "insane", ""],
    "--max-retries": ["0", "3", "-1", "x"],
    "--min-rate": ["1", "0", "x", "1000", "1e999"],
    "--max-rate": ["1", "0", "x", "50.5"],
    "--scan-delay": ["10ms", "0", "x", "-1", "1h"],
    "--max-scan-delay": ["10ms", "x"],
    "--min-rtt-timeout": ["50ms", "x", "0"],
    "--max-rtt-timeout": ["100ms", "x"],
    "--initial-rtt-timeout": ["200ms", "x"],
    "--host-timeout": ["30s", "0", "x", "1ms"],
    "--script-timeout": ["5s", "x"],
    "--min-parallelism": ["1", "0", "x", "100000"],
    "--max-parallelism": ["1", "0", "x"],
    "--min-hostgroup": ["1", "0", "x"],
    "--max-hostgroup": ["1", "0", "x", "99999999999"],
    "--ttl": ["1", "300", "x", "-5"],
    "-g": ["53", "70000", "x"],
    "--source-port": ["53", "-1"],
    "--data-length": ["0", "10", "99999", "x"],
    "--mtu": ["8", "7", "x", "0"],
    "-D": ["RND:2", "x", ""],
    "--spoof-mac": ["0", "Apple", ""],
    "--script": ["banner", "nosuchscript", "default and safe", "", "http-title,", "(("],
    "--script-args": ["a=1", "x={", "=", "a=b=c"],
    "--version-intensity": ["0", "9", "10", "x"],
    "--top-ports": ["1", "0", "x"],
    "--exclude-ports": ["1", "x", "70000"],
    "--stats-every": ["1s", "x"],
    "--dns-servers": ["127.0.0.1", "x", ""],
    "--stylesheet": ["a.xsl", ""],
    "-iR": ["1", "x", "-1"],  # -iR 0 never ends by design: endless_random() below
    "-oX": ["OUT", "/nonexistent/dir/x"],
    "-oN": ["OUT", "-"],
    "-oG": ["OUT", "-"],
    "-oS": ["OUT"],
    "-oA": ["OUT", "-"],
    "-e": ["lo", "nosuchif0"],
    "-S": ["127.0.0.1", "x"],
    "--datadir": ["/nonexistent"],
    "--exclude": ["127.0.0.1", "x/99", ""],
    "--servicedb": ["/nonexistent"],
    "-iL": ["/nonexistent", "-"],
}
TARGETS = ["127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.0/33", "nope.invalid", "::1", "",
           "127.0.0.1-2", "1.2.3.4.5"]


def command(rng, work):
    args = []
    for _ in range(rng.randint(1, 5)):
        if rng.random() < 0.35:
            args.append(rng.choice(FLAGS))
        else:
            flag = rng.choice(sorted(VALUED))
            vals = VALUED[flag]  # the first value is a good one: half the picks
            v = (vals[0] if rng.random() < 0.5 else rng.choice(vals)).replace("OUT", os.path.join(work, "out%d" % rng.randint(0, 9)))
            if flag == "-T" and rng.random() < 0.5:
                args.append("-T" + v)
            elif flag.startswith("--") and rng.random() < 0.3:
                args.append(flag + "=" + v)
            else:
                args += [flag, v]
    # The default 1,000 ports only without pacing: --max-rate 1 over them is a scan of
    # 17 minutes by design (nmap's too), not a hang.
    paced = any(a.split("=")[0] in ("--max-rate", "--scan-delay", "--max-scan-delay")
                or a in ("-T0", "-T1", "-T2") for a in args) or any(
                args[i] == "-T" and args[i + 1] in ("0", "1", "2", "paranoid", "sneaky", "polite")
                for i in range(len(args) - 1))
    if "-p" not in args and (paced or rng.random() < 0.9):
        args += ["-p", "1"]
    if rng.random() < 0.9:
        args.append(rng.choice(TARGETS))
    return args


def endless_random(binary, ns, work):
    """-sL -n -iR 0 lists random public addresses until interrupted (exit 130, as Ctrl-C)."""
    xml = os.path.join(work, "ir0.xml")
    p = subprocess.Popen(testkit.ns_argv(ns, [binary, "scan", "-sL", "-n", "-iR", "0", "-oX", xml]),
                         cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    listed = []
    deadline = time.monotonic() + 60
    for line in p.stdout:
        if line.startswith("Nmap scan report for "):
            listed.append(line.split()[-1])
        if len(listed) >= 5000 or time.monotonic() > deadline:
            break
    p.send_signal(signal.SIGINT)
    try:
        rest, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
        check(False, "-iR 0: SIGINT ends the scan", "still running 60 s after SIGINT")
        return
    listed += [l.split()[-1] for l in rest.splitlines() if l.startswith("Nmap scan report for ")]
    check(p.returncode == 130, "-iR 0: interrupted with exit 130", "exit %d: %s" % (p.returncode, err[-300:]))
    check(len(listed) >= 5000, "-iR 0: keeps listing (%d addresses before SIGINT)" % len(listed))
    bad = [a for a in listed if not ipaddress.ip_address(a).is_global or a.endswith((".0", ".255"))]
    check(not bad, "-iR 0: only public addresses", "not public: %s" % bad[:5])
    check(len(set(listed)) == len(listed), "-iR 0: no address twice",
          "%d repeats" % (len(listed) - len(set(listed))))
    done = [l for l in rest.splitlines() if l.startswith("Nmap done: ")]
    want = "Nmap done: %d IP addresses" % len(listed)
    check(len(done) == 1 and done[0].startswith(want), "-iR 0: the summary counts the hosts listed",
          "%s vs %r" % (done, want))
    text = open(xml).read() if os.path.exists(xml) else ""
    check(text.count("<host>") == len(listed) and 'total="%d"' % len(listed) in text,
          "-iR 0: the XML holds the hosts listed", "%d <host>, %d listed" % (text.count("<host>"), len(listed)))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.randrange(1 << 30)
    info("seed %d (rerun: run_option_fuzz.py BINARY %d %d)" % (seed, runs, seed))
    rng = random.Random(seed)
    ok, why = testkit.ns_can_create("nsefleet-fzprobe-%d" % os.getpid())
    if not check(ok, "network namespaces can be created", why):
        return testkit.summary()
    ns = "nsefleet-fuzz-%d" % os.getpid()
    work = tempfile.mkdtemp(prefix="nsefleet-fuzz.")
    accepted = refused = 0
    try:
        testkit.ns_add(ns)
        for i in range(runs):
            args = command(rng, work)
            line = "scan " + " ".join(shlex.quote(a) for a in args)
            try:
                r = subprocess.run(testkit.ns_argv(ns, [binary, "scan"] + args), cwd=work,
                                   capture_output=True, text=True, timeout=120,
                                   stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                check(False, "run %d ends by itself: %s" % (i + 1, line), "hung for 120 s")
                continue
            err = [l for l in r.stderr.splitlines() if l.strip()]
            if r.returncode == 0:
                accepted += 1
                good = "Nmap done" in r.stdout or "INTERFACES" in r.stdout or not r.stdout == ""
                check(good, "run %d: exit 0 with a report: %s" % (i + 1, line), r.stdout[-300:])
            elif r.returncode < 0 or r.returncode > 128 and r.returncode != 255:
                check(False, "run %d: no crash: %s" % (i + 1, line),
                      "exit %d\n%s" % (r.returncode, r.stderr[-500:]))
            else:
                refused += 1
                msg = [l for l in err if l.startswith("nsefleet: ")]
                check(len(msg) == 1, "run %d: refused with one message (exit %d): %s -> %s"
                      % (i + 1, r.returncode, line, msg[0] if msg else "?"),
                      r.stderr[-500:])
            if os.path.exists(os.path.join(work, "core")):
                check(False, "run %d left a core file: %s" % (i + 1, line))
                os.remove(os.path.join(work, "core"))
        info("%d command lines accepted, %d refused" % (accepted, refused))
        endless_random(binary, ns, work)
    finally:
        testkit.ns_finish(ns, work)
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
