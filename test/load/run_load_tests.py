#!/usr/bin/python3
"""Load tests on the stock-settings lab (issue: no result lost under load).

The lab (test/lab/lab.sh with NSEFLEET_LAB_STOCK=1) runs its daemons with their stock listen
settings: vsftpd's own listener with its accept queue of 32, nginx's, redis' and memcached's
default backlogs. At nsefleet's defaults:

1. Connect-scan burst: -sT on 127.1.0.0/22 x 6 ports, twice: every port is `open`, none
   `filtered` (the scanner's congestion control, not the lab, absorbs the burst).
2. W1 (tools/bench's: 6 stock scripts on 127.0.1.0/26): nmap 7.93 and `nsefleet scan` in
   the same run; every result nmap gives is in nsefleet's with the same output
   (compare.py --superset), and nsefleet gives at least as many.
3. The same scan on `nsefleet coordinator` + 3 `nsefleet worker` processes, one killed -9
   mid-scan: every host once, and again every result nmap gives.

Everything runs inside the lab's own network namespace on 127.0.0.0/8; every wait is bounded.
Usage (root): run_load_tests.py NSEFLEET_BINARY
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402

COMPARE = os.path.join(HERE, "..", "conformance", "compare.py")
NS = "nsefleet-load-%d" % os.getpid()
W1 = ["-sT", "-Pn", "-n", "-p", "21,22,80,443,6379", "--script",
      "http-title,ssh-hostkey,ftp-anon,redis-info,ssl-cert,http-server-header"]
W1_NET = "127.0.1.0/26"
BURST_NET = "127.1.0.0/22"
BURST_PORTS = "21,22,80,443,6379,11211"
check = testkit.check
info = testkit.info


def run(cmd, timeout, log):
    t = time.monotonic()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return rc, time.monotonic() - t


def port_states(xml):
    states = {}
    for h in ET.parse(xml).getroot().iter("host"):
        addr = h.find("address").get("addr")
        for p in h.iter("port"):
            states[(addr, p.get("portid"))] = p.find("state").get("state")
    return states


def hosts_of(xml):
    return [h.find("address").get("addr") for h in ET.parse(xml).getroot().iter("host")]


# ssh2.lua (stock nselib) encodes its DH public value as an mpint with a leading zero only
# when its byte count is a multiple of 8; when the value is one byte shorter and its top bit
# is set (about 1 exchange in 512), sshd reads a negative number and closes the connection,
# so ssh-hostkey loses that host, in nmap and nsefleet alike. At most this many such losses
# are tolerated per comparison, each listed.
MAX_SSH_MPINT = 2


def superset(nmap_xml, xml, what):
    r = subprocess.run([sys.executable, COMPARE, "--superset", "--max-diffs", "10", nmap_xml, xml],
                       capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("compare:")]
    bad = [l for l in r.stdout.splitlines() if l.startswith(("MISSING", "MISMATCH"))]
    ssh = [l for l in bad if l.startswith("MISSING in %s:" % xml) and l.endswith(" 22/tcp ssh-hostkey")]
    rest = [l for l in bad if l not in ssh and not (ssh and l == "MISMATCH: - post ssh-hostkey")]
    for l in ssh:
        info("%s: tolerated (ssh2.lua mpint encoding, see MAX_SSH_MPINT): %s" % (what, l))
    ok = r.returncode == 0 or (not rest and len(ssh) <= MAX_SSH_MPINT)
    check(ok, "%s: every nmap result present and equal (%s)" % (what, "; ".join(l[9:] for l in lines)))
    if not ok:
        print("\n".join(r.stdout.splitlines()[:60]), flush=True)


def inner(binary):
    work = tempfile.mkdtemp(prefix="load-")
    P = lambda n: os.path.join(work, n)
    try:
        # ---- 1. connect-scan burst
        total = 1024 * 6  # (before the congestion control, 30-45 of these came out filtered)
        for i in (1, 2):
            xml = P("burst%d.xml" % i)
            rc, t = run([binary, "scan", "-sT", "-Pn", "-n", "-p", BURST_PORTS, "-oX", xml,
                         BURST_NET], 300, P("burst%d.log" % i))
            states = port_states(xml) if rc == 0 else {}
            bad = sorted(k for k, v in states.items() if v != "open")
            info("burst %d: %.1f s" % (i, t))
            check(rc == 0 and len(states) == total and not bad,
                  "burst %d: all %d ports open on %s (rc=%s, %d ports, not open: %s)"
                  % (i, total, BURST_NET, rc, len(states), bad[:5]))

        # ---- 2. W1: nmap and nsefleet scan
        nmap_xml, scan_xml = P("nmap.xml"), P("scan.xml")
        rc, t_nmap = run(["nmap"] + W1 + ["-oX", nmap_xml, W1_NET], 600, P("nmap.log"))
        check(rc == 0, "W1: nmap 7.93 reference run (rc=%s, %.1f s)" % (rc, t_nmap))
        rc, t_scan = run([binary, "scan"] + W1 + ["-oX", scan_xml, W1_NET], 300, P("scan.log"))
        info("W1: nmap %.1f s, nsefleet scan %.1f s (ratio %.2f)" % (t_nmap, t_scan, t_scan / t_nmap))
        check(rc == 0, "W1: nsefleet scan exits 0 (rc=%s)" % rc)
        if rc == 0:
            superset(nmap_xml, scan_xml, "W1 nsefleet scan")

        # ---- 3. coordinator + 3 workers, one killed -9 mid-scan
        port = testkit.free_port()
        fleet_xml = P("fleet.xml")
        clog = open(P("coord.log"), "w")
        coord = subprocess.Popen([binary, "coordinator", "--listen", "tcp://127.0.0.1:%d" % port,
                                  "--state", P("state"), "--insecure", "--lease-timeout", "2s",
                                  "--max-hostgroup", "8"] + W1 + ["-oX", fleet_xml, W1_NET],
                                 stdout=clog, stderr=subprocess.STDOUT)
        workers = []
        for i in range(3):
            wlog = open(P("worker%d.log" % i), "w")
            workers.append(subprocess.Popen(
                [binary, "worker", "--connect", "tcp://127.0.0.1:%d" % port, "--insecure",
                 "--name", "w%d" % i], stdout=wlog, stderr=subprocess.STDOUT))
        time.sleep(3)
        killed = workers[0].poll() is None and coord.poll() is None
        if killed:
            workers[0].send_signal(signal.SIGKILL)
        try:
            rc = coord.wait(300)
        except subprocess.TimeoutExpired:
            coord.kill()
            rc = "timeout"
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        check(killed, "fleet: a worker was killed -9 mid-scan")
        check(rc == 0, "fleet: coordinator exits 0 (rc=%s)" % rc)
        if rc == 0:
            expect = hosts_of(scan_xml)
            got = hosts_of(fleet_xml)
            check(got == expect, "fleet: each of %d hosts once, in order (%d)" % (len(expect), len(got)))
            superset(nmap_xml, fleet_xml, "fleet with a worker killed")
    finally:
        if testkit.failed:
            info("files kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, NS, 1500, "load tests", NSEFLEET_LAB_STOCK="1")
