#!/usr/bin/env python3
"""No phantom open ports: a TCP connect to a loopback port that equals the socket's own
ephemeral source port joins the socket to itself (simultaneous open), and a naive connect
scan reports a port nobody listens on as `open`. nmap reports only the real listeners.

In a namespace of its own (only loopback), three listeners are started on 127.0.0.1 (one
inside the kernel's ephemeral range), then `nsefleet scan -sT -Pn -n -p- 127.0.0.1` runs
RUNS times: every run must report exactly the listening ports open, each closed port counted
in "Not shown". nmap 7.93 runs the same scan once as a reference.

Usage: run_phantom_ports.py BINARY
"""
import os
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import testkit  # noqa: E402
from testkit import check, info  # noqa: E402

RUNS = 4
LISTEN = [2222, 40123, 50999]   # 40123 and 50999 lie in the ephemeral range (32768-60999)
SERVER = r"""
import socket, sys, time
socks = []
for p in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p)); s.listen(128); socks.append(s)
print("ready", flush=True)
time.sleep(900)
"""


def open_ports(xml_path):
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        return None, str(e)
    ports, closed = [], 0
    for p in root.iter("port"):
        if p.find("state").get("state") == "open":
            ports.append(int(p.get("portid")))
    for e in root.iter("extraports"):
        if e.get("state") == "closed":
            closed += int(e.get("count"))
    return sorted(ports), closed


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    ok, why = testkit.ns_can_create("nsefleet-phprobe-%d" % os.getpid())
    if not check(ok, "network namespaces can be created", why):
        return testkit.summary()
    ns = "nsefleet-phantom-%d" % os.getpid()
    work = "/tmp/nsefleet-phantom-%d" % os.getpid()
    os.makedirs(work, exist_ok=True)
    server = None
    try:
        testkit.ns_add(ns, ipv6=False)
        server = subprocess.Popen(testkit.ns_argv(ns, [sys.executable, "-c", SERVER] +
                                                  [str(p) for p in LISTEN]),
                                  stdout=subprocess.PIPE, text=True)
        check(server.stdout.readline().strip() == "ready", "listeners up on %s" % LISTEN)
        rng = testkit.nsx(ns, "sysctl", "-n", "net.ipv4.ip_local_port_range").stdout.split()
        info("ephemeral port range in the namespace: %s" % "-".join(rng))
        for i in range(RUNS):
            out = os.path.join(work, "run%d.xml" % i)
            r = subprocess.run(testkit.ns_argv(ns, [binary, "scan", "-sT", "-Pn", "-n", "-p-",
                                                    "-oX", out, "127.0.0.1"]),
                               capture_output=True, text=True, timeout=300)
            ports, closed = open_ports(out)
            check(r.returncode == 0 and ports == LISTEN and closed == 65535 - len(LISTEN),
                  "run %d: -p- finds exactly the listening ports %s (open %s, %s closed, rc=%d)"
                  % (i + 1, LISTEN, ports, closed, r.returncode), r.stderr[-400:])
        out = os.path.join(work, "nmap.xml")
        r = subprocess.run(testkit.ns_argv(ns, ["nmap", "-sT", "-Pn", "-n", "-p-", "-oX", out,
                                                "127.0.0.1"]),
                           capture_output=True, text=True, timeout=300)
        ports, closed = open_ports(out)
        check(ports == LISTEN, "nmap 7.93 agrees: open %s" % ports)
        # A script socket that lands on its own port is refused, not connected to itself.
        lua = os.path.join(work, "selfconnect.nse")
        with open(lua, "w") as f:
            f.write('description=[[x]]\ncategories={"safe"}\n'
                    'hostrule=function() return true end\n'
                    'action=function(host)\n'
                    '  local nmap=require "nmap"\n'
                    '  local refused, connected = 0, 0\n'
                    '  for p = 33000, 33400 do\n'
                    '    local s = nmap.new_socket(); s:set_timeout(2000)\n'
                    '    if s:connect(host, p) then connected = connected + 1 else refused = refused + 1 end\n'
                    '    s:close()\n'
                    '  end\n'
                    '  return ("connected %d refused %d"):format(connected, refused)\n'
                    'end\n')
        r = subprocess.run(testkit.ns_argv(ns, [binary, "scan", "-sn", "-Pn", "-n", "--script",
                                                lua, "127.0.0.1"]),
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"connected (\d+) refused (\d+)", r.stdout)
        check(m and m.group(1) == "0" and m.group(2) == "401",
              "script sockets: 401 connects to closed ports, none joins itself (%s)"
              % (m.group(0) if m else r.stdout[-300:]))
    finally:
        if server:
            server.kill()
            server.wait()
        testkit.ns_finish(ns, work)
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
