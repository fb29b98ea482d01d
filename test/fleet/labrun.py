"""Pieces the fleet test runners share: ok/FAIL counting, a free loopback port, and the
outer part that starts the service lab (test/lab/lab.sh) in its own network namespace, runs
the script's inner part inside it, and stops the lab."""
import os
import socket
import subprocess
import sys

# The fleet protocol version the fake peers speak (common/wire/messages.h kProtocolVersion).
PROTOCOL = 3

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab", "lab.sh")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   - " + what, flush=True)
    else:
        failed += 1
        print("FAIL - " + what, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main(script, inner, doc, ns, timeout, what):
    """`script --inner BINARY` runs inner(BINARY) and prints the counts; `script BINARY` runs
    that inside the lab namespace `ns`, bounded by `timeout` seconds."""
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
        print("%d passed, %d failed" % (passed, failed))
        sys.exit(1 if failed else 0)
    if len(sys.argv) != 2:
        print(doc)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    env = dict(os.environ, NSEFLEET_LAB_NS=ns)
    r = subprocess.run([LAB, "start"], env=env)
    if r.returncode != 0:
        print("0 passed, 1 failed (lab did not start)")
        sys.exit(1)
    try:
        r = subprocess.run([LAB, "exec", "/usr/bin/python3", os.path.abspath(script), "--inner",
                            binary], env=env, timeout=timeout)
        rc = r.returncode
    except subprocess.TimeoutExpired:
        print("FAIL - %s timed out\n0 passed, 1 failed" % what)
        rc = 1
    finally:
        subprocess.run([LAB, "stop"], env=env)
    sys.exit(rc)
