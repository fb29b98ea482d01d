#!/usr/bin/env python3
"""Reverse DNS against nmap 7.93, in a network namespace of its own with only loopback:
198.51.100.10-12 live on lo, a dnsmasq on 127.0.0.1:53 holds PTR records for .10 and .11
(.12 has none), and both scanners use it through --dns-servers.

Usage: run_dns_tests.py BINARY

Checks: the "Nmap scan report for NAME (ADDR)" lines and each host's XML <hostnames> equal
nmap's (PTR names, a target given by name as "user" plus its PTR, /etc/hosts' localhost);
-n gives no names; NDJSON and grepable carry the names; a bad --dns-servers is a warning, not
a failure. Prints one line per check and "N passed, M failed".
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import testkit  # noqa: E402
from testkit import check, eq, info  # noqa: E402

ADDRS = ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
RECORDS = {"198.51.100.10": "alpha.lab.test", "198.51.100.11": "bravo.lab.test"}
TIMEOUT = 120


def names(xml_path):
    """{address: [(type, name), ...]} from an nmap XML file."""
    out = {}
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        return {"error": str(e)}
    for h in root.iter("host"):
        addr = h.find("address").get("addr")
        out[addr] = [(n.get("type"), n.get("name")) for n in h.iter("hostname")]
    return out


def report_lines(text):
    return sorted(l for l in text.splitlines() if l.startswith("Nmap scan report for"))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    ok, why = testkit.ns_can_create("nsefleet-dnsprobe-%d" % os.getpid())
    if not check(ok, "network namespaces can be created", why):
        return testkit.summary()
    if not check(shutil.which("dnsmasq") and shutil.which("nmap"), "dnsmasq and nmap installed"):
        return testkit.summary()
    ns = "nsefleet-dns-%d" % os.getpid()
    work = tempfile.mkdtemp(prefix="nsefleet-dns.")
    dnsmasq = None
    try:
        testkit.ns_add(ns, ipv6=False)
        for a in ADDRS:
            testkit.nsx(ns, "ip", "addr", "add", a + "/32", "dev", "lo")
        args = ["dnsmasq", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--keep-in-foreground",
                "--port=53", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--pid-file=" + os.path.join(work, "dnsmasq.pid"), "--user=root"]
        for addr, name in RECORDS.items():
            args.append("--ptr-record=%s.in-addr.arpa,%s" % (".".join(reversed(addr.split("."))), name))
        dnsmasq = subprocess.Popen(testkit.ns_argv(ns, args), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        for _ in range(50):  # bounded wait for the server
            if testkit.nsx(ns, "ss", "-lunH", "sport = :53", check=False).stdout.strip():
                break
            time.sleep(0.1)

        def both(label, extra, targets):
            out = {}
            for who, argv in (("nmap", ["nmap"]), ("nsefleet", [binary, "scan"])):
                xml = os.path.join(work, "%s-%s.xml" % (label, who))
                js = os.path.join(work, "%s-%s.json" % (label, who))
                gn = os.path.join(work, "%s-%s.gnmap" % (label, who))
                cmd = argv + ["-sT", "-Pn", "-p", "9"] + extra + targets + ["-oX", xml, "-oG", gn]
                if who == "nsefleet":
                    cmd += ["-oJ", js]
                try:
                    p = testkit.nsx(ns, *cmd, check=False, timeout=TIMEOUT)
                    out[who] = (p.returncode, p.stdout + p.stderr, xml, js, gn)
                except subprocess.TimeoutExpired:
                    out[who] = (None, "timed out", xml, js, gn)
            return out

        # PTR names from the namespace's DNS server, and one host without a record.
        r = both("ptr", ["--dns-servers", "127.0.0.1"], ADDRS)
        if check(r["nmap"][0] == 0 and r["nsefleet"][0] == 0, "ptr: both scans finished",
                 r["nmap"][1][-1000:] + r["nsefleet"][1][-1000:]):
            eq("ptr: report lines equal nmap's", report_lines(r["nsefleet"][1]),
               report_lines(r["nmap"][1]))
            eq("ptr: XML <hostnames> equal nmap's", names(r["nsefleet"][2]), names(r["nmap"][2]))
            check(names(r["nsefleet"][2]).get("198.51.100.10") == [("PTR", "alpha.lab.test")],
                  "ptr: 198.51.100.10 is alpha.lab.test", names(r["nsefleet"][2]))
            try:
                recs = [json.loads(l) for l in open(r["nsefleet"][3]) if l.strip()]
            except (OSError, ValueError) as e:
                recs = [str(e)]
            check(any("bravo.lab.test" in json.dumps(x) for x in recs), "ptr: NDJSON carries the name")
            gn = open(r["nsefleet"][4]).read()
            check("Host: 198.51.100.11 (bravo.lab.test)" in gn, "ptr: grepable carries the name",
                  gn[-800:])
        # A target given by name, and /etc/hosts for 127.0.0.1.
        r = both("user", ["--dns-servers", "127.0.0.1"], ["localhost"])
        if check(r["nmap"][0] == 0 and r["nsefleet"][0] == 0, "user: both scans finished",
                 r["nmap"][1][-1000:] + r["nsefleet"][1][-1000:]):
            eq("user: report lines equal nmap's", report_lines(r["nsefleet"][1]),
               report_lines(r["nmap"][1]))
            eq("user: XML <hostnames> (user and PTR) equal nmap's", names(r["nsefleet"][2]),
               names(r["nmap"][2]))
        # -n: no look-ups at all.
        r = both("never", ["-n", "--dns-servers", "127.0.0.1"], ADDRS[:1])
        eq("-n: report lines equal nmap's (no names)", report_lines(r["nsefleet"][1]),
           report_lines(r["nmap"][1]))
        # A bad --dns-servers warns and the scan goes on.
        p = testkit.nsx(ns, binary, "scan", "-sT", "-Pn", "-p", "9", "--dns-servers", "not an ip",
                        ADDRS[0], check=False, timeout=TIMEOUT)
        check(p.returncode == 0 and "--dns-servers" in p.stderr and
              "Nmap scan report for 198.51.100.10" in p.stdout,
              "a bad --dns-servers warns and the scan still reports the host",
              "rc %r: %s" % (p.returncode, (p.stdout + p.stderr)[-800:]))
    finally:
        if dnsmasq:
            dnsmasq.kill()
            dnsmasq.wait()
        testkit.ns_delete(ns)
        if testkit.failed:
            info("outputs kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
