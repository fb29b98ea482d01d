#!/usr/bin/env python3
"""nmap.registry across engines and workers: items that scripts on different hosts append to
one list, and sparse integer keys, all reach the postrule once each, as in one nmap process
(test/fleet/registry_append.nse), in `nsefleet scan` (one engine per core) and on a
coordinator with 4 worker processes; the stock reverse-index postrule equals nmap's.

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
TARGETS = "127.1.0.0/26"
WANT = "items=64 distinct=64 sparse=64 wrong=0"


def postscript(xml, sid):
    for s in ET.parse(xml).getroot().iter("script"):
        if s.get("id") == sid:
            return s.get("output", "").strip()
    return None


def inner(binary):
    work = tempfile.mkdtemp(prefix="registry-")
    try:
        base = ["-sn", "-Pn", "-n", "--max-hostgroup", "4", "--script", APPEND]
        # ---- nsefleet scan: the engines of one process share the registry
        for i in (1, 2):
            xml = os.path.join(work, "scan%d.xml" % i)
            r = subprocess.run([binary, "scan"] + base + ["-oX", xml, TARGETS], capture_output=True,
                               text=True, timeout=120)
            got = postscript(xml, "registry_append") if r.returncode == 0 else None
            check(got == WANT, "scan run %d: every host's append and sparse key reach the postrule "
                  "once (%s)" % (i, got or r.stderr.strip()[-200:]))

        # ---- a coordinator and 4 worker processes
        port = free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        xml = os.path.join(work, "fleet.xml")
        log = open(os.path.join(work, "coordinator.log"), "w")
        coord = subprocess.Popen([binary, "coordinator", "--listen", endpoint, "--insecure", "--state",
                                  os.path.join(work, "state")] + base + ["-oX", xml, TARGETS],
                                 stdout=subprocess.DEVNULL, stderr=log)
        time.sleep(0.3)
        workers = [subprocess.Popen([binary, "worker", "--connect", endpoint, "--insecure", "--engines", "1",
                                     "--name", "w%d" % i], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for i in range(4)]
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
        got = postscript(xml, "registry_append") if rc == 0 else None
        check(got == WANT, "4 workers: every host's append and sparse key reach the postrule once (%s)"
              % (got or "coordinator rc=%s" % rc))

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
