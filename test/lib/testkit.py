"""What the Python test runners under test/ share, so each runner holds only its own checks:

  results     check()/eq()/info() print one line per result in one format,
                ok   - what
                FAIL - what (detail)
                info - message
              and summary() prints the final "N passed, M failed" and gives the exit status.
  ports       free_port(): a loopback TCP port nothing listens on.
  namespaces  ns_add()/ns_delete()/ns_gone()/veth()/nsx(): network namespaces a test creates
              (only addresses of 127.0.0.0/8, 198.51.100.0/24, 203.0.113.0/24, no default
              route), deleted again at the end.
  the lab     Lab and lab_main(): test/lab/lab.sh's services in a namespace of their own.
  output      script_block(): one script's lines in nmap-style normal output.
  PROTOCOL    the fleet wire protocol version the Python fake peers speak.

A runner imports it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import testkit
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# The fleet protocol version the fake peers speak (common/wire/messages.h kProtocolVersion).
PROTOCOL = 7

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TEST_DIR)
LAB = os.path.join(TEST_DIR, "lab", "lab.sh")

# ---------------------------------------------------------------- results

passed = failed = 0


def check(ok, what, detail=""):
    """Counts one result and prints `ok   - what` or `FAIL - what (detail)`; returns bool(ok).
    `detail` is the evidence for a failure and is printed only then (a multi-line detail goes
    on the lines below, indented); what a passing line should show belongs in `what`."""
    global passed, failed
    ok = bool(ok)
    if ok:
        passed += 1
        print("ok   - " + what, flush=True)
        return ok
    failed += 1
    detail = "" if detail is None else str(detail)
    if "\n" in detail.strip():
        print("FAIL - " + what, flush=True)
        for line in detail.strip("\n").splitlines():
            print("       " + line)
        sys.stdout.flush()
    elif detail.strip():
        print("FAIL - %s (%s)" % (what, detail.strip()), flush=True)
    else:
        print("FAIL - " + what, flush=True)
    return ok


def eq(what, got, want):
    """check() that `got == want`; the failure shows both."""
    return check(got == want, what, "got %r, want %r" % (got, want))


def info(msg):
    """A line that is neither a pass nor a failure (timings, what was skipped and why)."""
    print("info - " + msg, flush=True)


def summary():
    """Prints the final "N passed, M failed" line; returns the exit status (1 on any failure)."""
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


# ---------------------------------------------------------------- ports

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- network namespaces

def reap(procs, timeout):
    """Waits up to `timeout` seconds for each process, then kills (and reaps) any still
    running. Returns their exit statuses (None for one that had to be killed)."""
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append(None)
    return codes


def sh(*args, check=True, timeout=30, input=None):
    """Runs a command, output captured as text; raises on failure unless check=False."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout, input=input)


def nsx(ns, *args, **kw):
    """sh() of a command inside namespace `ns`."""
    return sh("ip", "netns", "exec", ns, *args, **kw)


def ns_argv(ns, argv):
    """`argv` as a command line that runs inside namespace `ns`."""
    return ["ip", "netns", "exec", ns] + list(argv)


def ns_names():
    """The names of the namespaces that exist now."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if l.strip()]


def ns_can_create(name):
    """(True, "") when the kernel lets us create namespace `name` (created and deleted again),
    else (False, why): root and namespace support are what the raw tests need."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return False, "the kernel refuses network namespaces: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True, ""


def ns_add(name, ipv6=True):
    """Creates namespace `name` with `lo` up; ipv6=False turns IPv6 off in it (no router
    solicitations, no addresses outside the test ranges)."""
    sh("ip", "netns", "add", name)
    nsx(name, "ip", "link", "set", "lo", "up")
    if not ipv6:
        nsx(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        nsx(name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")


def veth(dev_a, ns_a, addrs_a, dev_b, ns_b, addrs_b):
    """A veth pair from dev_a in ns_a to dev_b in ns_b, both ends up, each with its
    addresses ("198.51.100.1/24", ...). Names must stay under 16 bytes."""
    sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b,
       "netns", ns_b)
    for ns, dev, addrs in ((ns_a, dev_a, addrs_a), (ns_b, dev_b, addrs_b)):
        for a in addrs:
            nsx(ns, "ip", "addr", "add", a, "dev", dev)
        nsx(ns, "ip", "link", "set", dev, "up")


def ns_delete(*names):
    """Deletes the namespaces, first ending the processes still inside them (every one was
    started by the test that made the namespace): SIGTERM, then SIGKILL after 2.5 s."""
    for ns in names:
        if ns not in ns_names():
            continue
        for i in range(50):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(int(p), signal.SIGTERM if i < 25 else signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            time.sleep(0.1)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ns_finish(ns, work=None):
    """End of a test's own namespace: deletes it (checked, so a leftover fails the test) and
    its scratch directory `work`."""
    ns_delete(ns)
    check(ns_gone(ns), "namespace %s deleted" % ns)
    if work:
        shutil.rmtree(work, ignore_errors=True)


def ns_gone(*names):
    """True when none of the namespaces exists any more."""
    left = ns_names()
    return not any(ns in left for ns in names)


# ---------------------------------------------------------------- the service lab

class Lab:
    """test/lab/lab.sh with its own namespace `ns`; `env` adds NSEFLEET_LAB_* settings
    (NSEFLEET_LAB_DIR, NSEFLEET_LAB_STOCK, ...) to the environment of every lab.sh call."""

    def __init__(self, ns, **env):
        self.ns = ns
        self.env = dict(os.environ, NSEFLEET_LAB_NS=ns, **env)

    def start(self, timeout=120):
        """Starts the lab; the CompletedProcess (output captured) tells how it went. The output
        goes through a file: some daemons (dovecot) keep the descriptors they were started
        with, and a pipe would never reach its end."""
        with tempfile.TemporaryFile(mode="w+") as out:
            r = subprocess.run(["bash", LAB, "start"], env=self.env, stdout=out,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout)
            out.seek(0)
            r.stdout, r.stderr = out.read(), ""
        return r

    def argv(self, argv):
        """`argv` as a command line that runs inside the lab's namespace."""
        return ["bash", LAB, "exec"] + list(argv)

    def stop(self):
        """Stops the lab; the namespace is deleted even when lab.sh could not do it."""
        subprocess.run(["bash", LAB, "stop"], env=self.env, capture_output=True, timeout=120)
        ns_delete(self.ns)


def lab_main(script, inner, doc, ns, timeout, what, **lab_env):
    """The two halves of a runner that needs the lab. `script --inner BINARY` runs
    inner(BINARY) (inside the lab) and prints the summary; `script BINARY` starts the lab in
    namespace `ns`, runs `script --inner BINARY` inside it, bounded by `timeout` seconds,
    and stops the lab. Exits with the inner part's status."""
    if len(sys.argv) >= 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
        sys.exit(summary())
    if len(sys.argv) != 2:
        print(doc)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    lab = Lab(ns, **lab_env)
    try:
        r = lab.start()
        if r.returncode != 0:
            check(False, "service lab up in namespace " + ns, r.stdout + r.stderr)
            sys.exit(summary())
        for line in (r.stdout + r.stderr).splitlines():  # "lab: up in namespace ...: ports ..."
            info(line)
        try:
            r = subprocess.run(lab.argv(["/usr/bin/python3", os.path.abspath(script), "--inner",
                                         binary]), env=lab.env, timeout=timeout)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            check(False, "%s finish within %d s" % (what, timeout))
            rc = summary()
    finally:
        lab.stop()
    sys.exit(rc)


# ---------------------------------------------------------------- normal output

_SCRIPT_LINE = re.compile(r"^\|([ _])(.*)$")


def script_block(text, name):
    """The output of script `name` in nmap-style normal output, as a list of lines with the
    "| "/"|_" prefixes and the leading "name: " removed; [] when the script has no result.

    Normal output prints a script's result as "| name: first line", "| next line", ...,
    "|_last line", each line exactly as the script gave it (indentation included). A
    structured result starts on the line after "| name: ": that empty first line is a
    formatting artifact and is left out. Only the first block of `name` is returned."""
    lines, inside = [], False
    for line in text.splitlines():
        m = _SCRIPT_LINE.match(line)
        if not inside:
            if m and m.group(2).startswith(name + ":"):
                inside = True
                first = m.group(2)[len(name) + 1:]
                first = first[1:] if first.startswith(" ") else first
                if first:
                    lines.append(first)
                if m.group(1) == "_":
                    break
            continue
        if not m:
            break
        lines.append(m.group(2))
        if m.group(1) == "_":
            break
    return lines
