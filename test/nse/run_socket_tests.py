#!/usr/bin/env python3
"""Runs test/nse/socket_*.nse against the services of servers.py and compares each script's
output with socket_<name>.expected.

  test/nse/run_socket_tests.py [--binary build/nsefleet] [--nmap] [names...]

--nmap runs the stock nmap binary instead (the oracle): its output differs from the expected
files only where nsefleet deviates on purpose (unconnected sockets return instead of raising,
nmap.socket.loop is driver-only). Exit status 0 when every compared script matches.
"""
import argparse
import difflib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check, script_block  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    ap.add_argument("--nmap", action="store_true", help="run the stock nmap as an oracle")
    ap.add_argument("names", nargs="*", default=["tcp", "udp", "ssl"])
    a = ap.parse_args()

    srv = subprocess.Popen([sys.executable, os.path.join(HERE, "servers.py"), "--lifetime",
                            "300", "--stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    try:
        ports = srv.stdout.readline().strip()
        if not ports:
            check(False, "servers.py started")
            testkit.summary()
            return 2
        for n in a.names:
            name = "socket_" + n
            script = os.path.join(HERE, name + ".nse")
            cmd = (["nmap"] if a.nmap else [a.binary, "scan"]) + [
                "-Pn", "-n", "-sn", "--script", script, "--script-args", ports, "127.0.0.1"]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                out = r.stdout
            except subprocess.TimeoutExpired as e:
                out = e.stdout or ""
                if isinstance(out, bytes):
                    out = out.decode(errors="replace")
            got = script_block(out, name)
            with open(os.path.join(HERE, name + ".expected")) as f:
                want = f.read().splitlines()
            diff = "\n".join(difflib.unified_diff(want, got, "expected", "got", lineterm=""))
            check(got == want, f"{name} output equals {name}.expected",
                  "\n" + diff + ("\n" + out[-2000:] if not got else ""))
    finally:
        srv.stdin.close()
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
