#!/usr/bin/env python3
"""Service and version detection (-sV) against nmap 7.93 on the service lab (its own
namespace, extra services on, daemons with their stock listen settings).

Usage: run_version_tests.py BINARY

  1. -sT -sV on every TCP port of the lab: per port, the <service> attributes (name, product,
     version, extrainfo, ostype, hostname, devicetype, tunnel, method, conf) and <cpe> list
     equal nmap's; the normal output's port table and Service Info line are nmap's.
  2. Three odd services at --version-intensity 0 (one silent, one with an unknown banner, one
     that closes at once): "http?", a service fingerprint (same probes answered) and
     tcpwrapped as nmap reports them.
  3. -sU -sV on the lab's UDP services (dnsmasq 53, rpcbind 111, ntpd 123, snmpd 161): states
     and services equal; then their scripts (UDP_SCRIPTS) with outputs equal to nmap's.
  4. -sV -sC: every script output equal to nmap's (compare.py), and the version phase's own
     script output is not reported.
  5. --version-trace lines; bad input: a malformed nmap-service-probes names its line, a bad
     --version-intensity exits non-zero with one line.
Prints one line per check and "N passed, M failed"; exit 0 only when all passed.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testkit  # noqa: E402
from testkit import check, eq, info  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TCP_PORTS = "21,22,25,53,80,110,111,143,389,443,445,3306,6379,11211"
BASIC_PORTS = "21,22,80,443,6379,11211"
UDP_PORTS = "53,111,123,161"
# The UDP scripts of -sC whose output the lab fixes (snmp-processes and snmp-win32-software
# list the machine's processes and packages, snmp-netstat the scanners' own sockets).
UDP_SCRIPTS = "snmp-info,snmp-sysdescr,snmp-interfaces,ntp-info,rpcinfo,dns-nsid"
ODD_SILENT, ODD_GARBAGE, ODD_CLOSE = 8008, 7777, 4321
SCAN_TIMEOUT = 300
from compare_services import mask, services as all_services  # noqa: E402


def odd_servers():
    """Listeners on loopback inside the lab: silent, an unknown banner, close at once."""
    def serve(port, mode):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        held = []
        while True:
            c, _ = s.accept()
            if mode == "close":
                c.close()
                continue
            if mode == "garbage":
                try:
                    c.sendall(b"XYZZY-42 hello\r\n")
                except OSError:
                    pass
            held.append(c)  # silent until the test ends
            if len(held) > 200:
                held.pop(0).close()

    for port, mode in ((ODD_SILENT, "silent"), (ODD_GARBAGE, "garbage"), (ODD_CLOSE, "close")):
        threading.Thread(target=serve, args=(port, mode), daemon=True).start()
    time.sleep(0.2)


def scan(argv, work, name):
    """Runs one scanner; returns (returncode, xml path, normal path, stdout+stderr)."""
    xml, normal = os.path.join(work, name + ".xml"), os.path.join(work, name + ".nmap")
    try:
        r = subprocess.run(argv + ["-oX", xml, "-oN", normal], capture_output=True, text=True,
                           timeout=SCAN_TIMEOUT)
        return r.returncode, xml, normal, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return None, xml, normal, "timed out after %d s" % SCAN_TIMEOUT


def services(xml_path):
    """{"N/proto": {state, attrs..., cpe: [...], servicefp: bool}} of the first host."""
    try:
        return {port: d for (_, port), d in all_services(xml_path).items()}
    except (ET.ParseError, OSError, AttributeError) as e:
        return {"error": str(e)}


def port_table(normal_path):
    """The normal output's port table, fingerprint header and Service Info line."""
    try:
        lines = open(normal_path).read().splitlines()
    except OSError:
        return []
    out, inside = [], False
    for line in lines:
        if line.startswith("PORT "):
            inside = True
        if inside:
            if not line.strip():
                break
            if line.startswith("SF"):  # fingerprint body: dates and times differ
                continue
            out.append(mask(line))
    return out


def compare_run(label, nmap, ours, want_ports):
    n_rc, n_xml, n_norm, n_out = nmap
    o_rc, o_xml, o_norm, o_out = ours
    if not check(n_rc == 0, label + ": nmap finished", n_out[-2000:]):
        return
    if not check(o_rc == 0, label + ": nsefleet finished", o_out[-2000:]):
        return
    a, b = services(n_xml), services(o_xml)
    for port in want_ports:
        check(port in a, "%s: nmap reports %s" % (label, port))
        if port in a:
            got = b.get(port)
            check(got == a[port], "%s: %s service equals nmap's (%s %s)" %
                  (label, port, a[port].get("name"), a[port].get("product", "")),
                  "nmap %r\nnsefleet %r" % (a[port], got))
    eq(label + ": normal output port table, fingerprint header and Service Info as nmap's",
       port_table(o_norm), port_table(n_norm))


def inner(binary):
    ours = [binary, "scan"]
    work = tempfile.mkdtemp(prefix="nsefleet-version.")
    keep = False
    try:
        odd_servers()
        common = ["-Pn", "-n", "-sV"]
        # 1. every TCP service of the lab
        t = time.time()
        n = scan(["nmap", "-sT"] + common + ["-p", TCP_PORTS, "127.0.0.1"], work, "nmap-tcp")
        tn = time.time() - t
        t = time.time()
        o = scan(ours + ["-sT"] + common + ["-p", TCP_PORTS, "127.0.0.1"], work, "ours-tcp")
        info("-sV on %d TCP ports: nmap %.1f s, nsefleet %.1f s" %
             (len(TCP_PORTS.split(",")), tn, time.time() - t))
        compare_run("tcp", n, o, [p + "/tcp" for p in TCP_PORTS.split(",")])
        b = services(o[1])
        check(b.get("443/tcp", {}).get("tunnel") == "ssl", "tcp: 443 identified through TLS")

        # 2. odd services: unidentified, unknown banner (fingerprint), tcpwrapped
        odd = "%d,%d,%d" % (ODD_SILENT, ODD_GARBAGE, ODD_CLOSE)
        args = ["-sT"] + common + ["--version-intensity", "0", "-p", odd, "127.0.0.1"]
        n = scan(["nmap"] + args, work, "nmap-odd")
        o = scan(ours + args, work, "ours-odd")
        compare_run("odd", n, o, ["%d/tcp" % p for p in (ODD_SILENT, ODD_GARBAGE, ODD_CLOSE)])
        fp = ""
        try:
            root = ET.parse(o[1]).getroot()
            for svc in root.iter("service"):
                fp += svc.get("servicefp") or ""
        except (ET.ParseError, OSError):
            pass
        check(re.search(r'SF-Port%d-TCP:V=[\d.]+%%I=0%%D=\d+/\d+%%Time=[0-9A-F]+%%P=[^%%]+%%r\(NULL,10,'
                        r'"XYZZY-42\\x20hello\\r\\n"\)' % ODD_GARBAGE, fp),
              "odd: the unknown banner's fingerprint lists the NULL probe's answer", fp[:300])

        # --host-timeout bounds version detection too: a silent port at intensity 7 would
        # take minutes; both scanners give up on the host and say so.
        args = ["-sT"] + common + ["--host-timeout", "4s", "-p", str(ODD_SILENT), "127.0.0.1"]
        skip = "Skipping host 127.0.0.1 due to host timeout"
        n = scan(["nmap"] + args, work, "nmap-hto")
        t = time.time()
        o = scan(ours + args, work, "ours-hto")
        took = time.time() - t
        check(o[0] == 0 and skip in o[3] and took < 60,
              "--host-timeout 4s stops -sV on a silent port (%.1f s) and skips the host" % took,
              o[3][-1500:])
        check(skip in n[3], "nmap skips that host too", n[3][-800:])

        # 3. UDP services (raw -sU: root): versions, then the UDP scripts on them
        if os.geteuid() == 0:
            args = ["-sU"] + common + ["-p", UDP_PORTS, "127.0.0.1"]
            n = scan(["nmap"] + args, work, "nmap-udp")
            o = scan(ours + args, work, "ours-udp")
            compare_run("udp", n, o, [p + "/udp" for p in UDP_PORTS.split(",")])
            args = ["-sU"] + common + ["--script", UDP_SCRIPTS, "-p", UDP_PORTS, "127.0.0.1"]
            n = scan(["nmap"] + args, work, "nmap-udpscripts")
            o = scan(ours + args, work, "ours-udpscripts")
            if check(n[0] == 0 and o[0] == 0, "udp scripts: both finished", (n[3] + o[3])[-2000:]):
                r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), "--per-script",
                                    "--expect", UDP_SCRIPTS, "--label", "sU-sV ", n[1], o[1]],
                                   capture_output=True, text=True)
                check(r.returncode == 0, "udp scripts: every output equals nmap's (%s)" % UDP_SCRIPTS,
                      r.stdout[-3000:] + r.stderr[-1000:])
        else:
            check(False, "udp: -sU needs root")

        # 4. -sV -sC: script outputs as nmap's, the version phase silent
        args = ["-sT", "-Pn", "-n", "-sV", "-sC", "-p", BASIC_PORTS, "127.0.0.1"]
        n = scan(["nmap"] + args, work, "nmap-svc")
        o = scan(ours + args, work, "ours-svc")
        if check(n[0] == 0 and o[0] == 0, "-sV -sC: both finished", (n[3] + o[3])[-2000:]):
            r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), "--per-script",
                                "--label", "sV-sC ", n[1], o[1]], capture_output=True, text=True)
            check(r.returncode == 0, "-sV -sC: every script output equals nmap's",
                  r.stdout[-3000:] + r.stderr[-1000:])
        args = ["-sT", "-Pn", "-n", "-sV", "-p", "111", "127.0.0.1"]
        o = scan(ours + args, work, "ours-vphase")
        try:
            scripts = list(ET.parse(o[1]).getroot().iter("script"))
        except (ET.ParseError, OSError):
            scripts = None
        b = services(o[1])
        check(o[0] == 0 and scripts == [] and b.get("111/tcp", {}).get("version") == "2-4",
              "-sV alone: version scripts set rpcbind's version (2-4) and report no output",
              "rc %r, scripts %r, service %r" % (o[0], scripts, b.get("111/tcp")))

        # 5. --version-trace and bad input
        r = subprocess.run(ours + ["-sT", "-Pn", "-n", "-sV", "--version-trace", "-p", "22",
                                   "127.0.0.1"], capture_output=True, text=True, timeout=SCAN_TIMEOUT)
        check("Service scan sending probe NULL to 127.0.0.1:22 (tcp)" in r.stdout and
              "Service scan match (Probe NULL matched with NULL line" in r.stdout,
              "--version-trace prints each probe and the match", r.stdout[-1500:])
        r = subprocess.run(ours + ["-sV", "--version-intensity", "12", "127.0.0.1"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and
              "--version-intensity" in r.stderr,
              "a bad --version-intensity exits non-zero with one line", r.stderr)
        datadir = os.path.join(work, "data")
        os.makedirs(datadir)
        shutil.copy("/usr/share/nmap/nmap-services", datadir)
        with open(os.path.join(datadir, "nmap-service-probes"), "w") as f:
            f.write("Probe TCP NULL q||\nmatch ssh m|^SSH-(\\d| p/broken/\n")
        r = subprocess.run(ours + ["-sT", "-Pn", "-n", "-sV", "--datadir", datadir, "-p", "22",
                                   "127.0.0.1"], capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and "nmap-service-probes:2: bad pattern" in r.stderr,
              "a malformed nmap-service-probes line is reported with its line number",
              "rc %r: %s" % (r.returncode, r.stderr))
        keep = testkit.failed > 0
    finally:
        if keep:
            info("outputs kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, "nsefleet-ver-%d" % os.getpid(), 1500,
                     "the version tests", NSEFLEET_LAB_EXTRA="1", NSEFLEET_LAB_STOCK="1")
