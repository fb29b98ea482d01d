#!/usr/bin/env python3
"""nmap.registry across engines and workers: items that scripts on different hosts append to
one list, and sparse integer keys, all reach the postrule once each, as in one nmap process
(test/fleet/registry_append.nse); the NSE manual's whois pattern under nmap.mutex makes one
query per key (test/fleet/registry_whois.nse). In `nsefleet scan` (one engine per core), on
a coordinator with 4 worker processes, and on 4 workers with one killed -9 mid-scan; the
stock reverse-index postrule equals nmap's.

Usage: run_registry_tests.py NSEFLEET_BINARY   (runs inside the lab's network namespace)"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402
from testkit import check, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APPEND = os.path.join(HERE, "registry_append.nse")
WHOIS = os.path.join(HERE, "registry_whois.nse")
TARGETS = "127.1.0.0/26"
WANT = "items=64 distinct=64 sparse=64 wrong=0"
WHOIS_WANT = "queries=8 keys=8"


def postscript(xml, sid):
    for post in ET.parse(xml).getroot().iter("postscript"):
        for s in post.iter("script"):
            if s.get("id") == sid:
                return s.get("output", "").strip()
    return None


def host_outputs(xml, sid):
    """The outputs of script `sid` in every host's hostscript, in document order."""
    out = []
    for h in ET.parse(xml).getroot().iter("host"):
        for s in h.iter("script"):
            if s.get("id") == sid:
                out.append(s.get("output", "").strip())
    return out


def check_whois(xml, where, exact=True):
    """The whois pattern: one query per key, every host answered (a query the killed
    worker made under the lock and never published may be made again: not exact)."""
    outs = host_outputs(xml, "registry_whois")
    queried = sum(1 for o in outs if o.startswith("queried"))
    post = postscript(xml, "registry_whois")
    check(len(outs) == 64, "%s: every host ran the whois pattern (%d)" % (where, len(outs)))
    if exact:
        check(queried == 8 and post == WHOIS_WANT,
              "%s: one query per key under the fleet mutex (hosts queried %d, postrule %s)"
              % (where, queried, post))
    else:
        check(post is not None and post.endswith("keys=8") and queried >= 8,
              "%s: every key answered (hosts queried %d, postrule %s)" % (where, queried, post))


def run_fleet(binary, work, name, args, kill_after=None):
    """A coordinator and 4 single-engine worker processes; with kill_after, worker 0 gets
    SIGKILL that many seconds in. Returns (coordinator rc, XML path)."""
    port = free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    xml = os.path.join(work, name + ".xml")
    log = open(os.path.join(work, name + ".coordinator.log"), "w")
    coord = subprocess.Popen([binary, "coordinator", "--listen", endpoint, "--insecure", "--state",
                              os.path.join(work, name + ".state"), "--lease-timeout", "2s"] + args +
                             ["-oX", xml, TARGETS], stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(0.3)
    workers = [subprocess.Popen([binary, "worker", "--connect", endpoint, "--insecure", "--engines", "1",
                                 "--name", "w%d" % i], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i in range(4)]
    if kill_after is not None:
        time.sleep(kill_after)
        workers[0].kill()
    try:
        rc = coord.wait(timeout=180)
    except subprocess.TimeoutExpired:
        coord.kill()
        rc = "timeout"
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.kill()
    log.close()
    return rc, xml


def inner(binary):
    work = tempfile.mkdtemp(prefix="registry-")
    try:
        base = ["-sn", "-Pn", "-n", "--max-hostgroup", "4", "--script", APPEND + "," + WHOIS]
        # ---- nsefleet scan: the engines of one process share the registry
        for i in (1, 2):
            xml = os.path.join(work, "scan%d.xml" % i)
            r = subprocess.run([binary, "scan"] + base + ["-oX", xml, TARGETS], capture_output=True,
                               text=True, timeout=120)
            got = postscript(xml, "registry_append") if r.returncode == 0 else None
            check(got == WANT, "scan run %d: every host's append and sparse key reach the postrule "
                  "once (%s)" % (i, got or r.stderr.strip()[-200:]))
            if r.returncode == 0:
                check_whois(xml, "scan run %d" % i)

        # ---- a coordinator and 4 worker processes
        rc, xml = run_fleet(binary, work, "fleet", base)
        got = postscript(xml, "registry_append") if rc == 0 else None
        check(got == WANT, "4 workers: every host's append and sparse key reach the postrule once (%s)"
              % (got or "coordinator rc=%s" % rc))
        if rc == 0:
            check_whois(xml, "4 workers")

        # ---- the same with one worker killed -9 mid-scan: its groups go to the others
        slow = base + ["--script-args", "registry_append.delay=1.5"]
        rc, xml = run_fleet(binary, work, "killed", slow, kill_after=2.5)
        got = postscript(xml, "registry_append") if rc == 0 else None
        check(got == WANT, "4 workers, one killed -9 mid-scan: every host's append reaches the "
              "postrule once (%s)" % (got or "coordinator rc=%s" % rc))
        if rc == 0:
            check_whois(xml, "4 workers, one killed", exact=False)
            with open(os.path.join(work, "killed.coordinator.log")) as f:
                check("lost" in f.read(), "the coordinator saw the killed worker go")

        # ---- the stock reverse-index postrule (port numbers are sparse integer keys)
        args = ["-sT", "-Pn", "-n", "-p", "21,22,6379,11211", "--script", "reverse-index", "127.0.0.1"]
        nx, fx = os.path.join(work, "ri.nmap.xml"), os.path.join(work, "ri.nsefleet.xml")
        subprocess.run(["nmap"] + args + ["-oX", nx], capture_output=True, timeout=120)
        subprocess.run([binary, "scan"] + args + ["-oX", fx], capture_output=True, timeout=120)
        want, got = postscript(nx, "reverse-index"), postscript(fx, "reverse-index")
        check(want is not None and got == want, "reverse-index postrule equals nmap's (nmap %r, nsefleet %r)"
              % (want, got))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, "nsefleet-registry-%d" % os.getpid(), 600, "registry tests")
