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
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def script_block(text, name):
    """The result lines of script `name` in nmap-style normal output, prefixes removed."""
    lines, inside = [], False
    for line in text.splitlines():
        m = re.match(r"^\|([ _])(.*)$", line)
        if not inside:
            if m and m.group(2).startswith(name + ":"):
                inside = True
                first = m.group(2)[len(name) + 1:]
                lines.append(first[1:] if first.startswith(" ") else first)
                if m.group(1) == "_":
                    break
            continue
        if not m:
            break
        lines.append(m.group(2))
        if m.group(1) == "_":
            break
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    ap.add_argument("--nmap", action="store_true", help="run the stock nmap as an oracle")
    ap.add_argument("names", nargs="*", default=["tcp", "udp", "ssl"])
    a = ap.parse_args()

    srv = subprocess.Popen([sys.executable, os.path.join(HERE, "servers.py"), "--lifetime",
                            "300", "--stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    failed = 0
    try:
        ports = srv.stdout.readline().strip()
        if not ports:
            print("servers.py did not start")
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
            if got == want:
                print(f"PASS {name}")
                continue
            failed += 1
            print(f"FAIL {name}")
            sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(
                want, got, "expected", "got", lineterm=""))
            if not got:
                print(out[-2000:])
    finally:
        srv.stdin.close()
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
