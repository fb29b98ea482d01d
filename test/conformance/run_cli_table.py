#!/usr/bin/env python3
"""nmap's everyday command lines, nmap 7.93 against `nsefleet scan`, on the service lab (its own
namespace, only loopback: nothing leaves).

For every line of TABLE both scanners run inside the lab; compared are: the exit status, each
host's status and port table (port, protocol, state, reason, service name; product/version
with -sV), each script's output, the refusal message of a refused line, and the terminal
lines once volatile parts are masked (times, latencies, dates; "Discovered open port" lines
as a set; script output lines are compared through the XML). A line whose only differences
are listed in ALLOWED passes with that reason printed; any other difference fails.
Prints "K/N command lines equal".

Usage: run_cli_table.py BINARY
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import testkit  # noqa: E402
from testkit import check, info  # noqa: E402

H = "127.0.1.%d"
# (name, arguments); "XML" is replaced by an -oX file of each scanner's own.
TABLE = [
    ("connect-3-ports", "-sT -Pn -n -p 21,22,80 " + H % 5),
    ("connect-all-ports", "-sT -Pn -n -p- " + H % 6),
    ("fast", "-sT -Pn -n -F " + H % 7),
    ("top-ports", "-sT -Pn -n --top-ports 20 " + H % 8),
    ("default-scan-root", "-Pn -n -p 22,80,81 " + H % 9),
    ("syn", "-sS -Pn -n -p 21-25,80 " + H % 10),
    ("discovery-connect", "-sT -n -p 80 127.0.1.0/29"),
    ("ping-scan", "-sn -n 127.0.1.16/29"),
    ("list-scan", "-sL -n 127.0.1.0/30"),
    ("open-only", "-sT -Pn -n -p 22,80,81 --open " + H % 11),
    ("reason", "-sT -Pn -n -p 21,22,81 --reason " + H % 12),
    ("http-title", "-sT -Pn -n -p 80 --script http-title " + H % 13),
    ("ftp-anon", "-sT -Pn -n -p 21 --script ftp-anon " + H % 14),
    ("ssh-hostkey", "-sT -Pn -n -p 22 --script ssh-hostkey " + H % 15),
    ("banner-args", "-sT -Pn -n -p 21,22 --script banner --script-args banner.timeout=3s " + H % 16),
    ("default-scripts", "-sT -Pn -n -sC -p 21,22,80 " + H % 17),
    ("version", "-sT -Pn -n -sV -p 21,22,80,6379 " + H % 18),
    ("T4", "-T4 -sT -Pn -n -p 80 " + H % 19),
    ("T-space-4", "-T 4 -sT -Pn -n -p 80 " + H % 20),
    ("two-p", "-sT -Pn -n -p 22 -p 80 " + H % 21),
    ("sn-with-p", "-sn -n -p 22 " + H % 22),
    ("sT-and-sS", "-sT -sS -n -p 22 " + H % 23),
    ("max-retries", "-sT -Pn -n -p 80,81 --max-retries 1 " + H % 24),
    ("rates", "-sT -Pn -n -p 80,81 --min-rate 100 --max-rate 1000 " + H % 25),
    ("scan-delay", "-sT -Pn -n -p 80,81 --scan-delay 10ms " + H % 26),
    ("rtt-timeouts", "-sT -Pn -n -p 80,81 --max-rtt-timeout 200ms --initial-rtt-timeout 100ms " + H % 27),
    ("PN-alias", "-sT -PN -n -p 80 " + H % 28),
    ("sP-alias", "-sP -n " + H % 29),
    ("exclude", "-sT -Pn -n -p 80 --exclude 127.0.1.31 127.0.1.30-32"),
    ("exclude-ports", "-sT -Pn -n -p 21,80 --exclude-ports 80 " + H % 33),
    ("grepable-stdout", "-sT -Pn -n -p 22,80 -oG - " + H % 34),
    ("min-over-max-rate", "-sT -Pn -n -p 80 --min-rate 5 --max-rate 1 " + H % 35),
    ("bad-ttl", "-sT -Pn -n -p 80 --ttl 300 " + H % 36),
    ("syn-data-length", "-sS -Pn -n -p 80,81 --data-length 20 " + H % 37),
    ("syn-source-port", "-sS -Pn -n -p 80,81 -g 53 " + H % 38),
    ("syn-ttl", "-sS -Pn -n -p 80,81 --ttl 33 " + H % 39),
    ("syn-badsum", "-sS -Pn -n -p 80 --badsum --max-retries 0 " + H % 40),
    ("syn-fragments", "-sS -Pn -n -p 80,81 -f " + H % 41),
    ("syn-decoys", "-sS -Pn -n -p 80,81 -D 198.51.100.7,ME,198.51.100.8 " + H % 62),
    ("ping-PS", "-sS -n -PS80 -p 22 " + H % 42),
    ("ping-PE", "-sS -n -PE -p 22 " + H % 43),
    ("ping-PA-PP", "-sS -n -PA443 -PP -p 22 " + H % 44),
    ("udp-closed", "-sU -Pn -n -p 53,69 " + H % 45),
    ("ipv6-and-v4", "-6 -sT -Pn -n -p 22 ::1 " + H % 46),
    ("script-args-ua", "-sT -Pn -n -p 80 --script http-title --script-args http.useragent=x " + H % 47),
    ("hostgroup", "-sT -Pn -n --max-hostgroup 2 -p 80 127.0.1.48-51"),
    ("verbose", "-v -sT -Pn -n -p 21,22,81 " + H % 52),
    ("verbose-scripts", "-v -sT -Pn -n -p 21,22 --script banner " + H % 59),
    ("debug-scripts", "-d -sT -Pn -n -p 21 --script banner " + H % 60),
    ("verbose-connect-discovery", "-v --unprivileged -sT -n -p 22,81 --reason " + H % 67),
    ("verbose-ping-unprivileged", "-v -sn --unprivileged -n " + H % 68),
    ("verbose-ping-root", "-v -sn -n " + H % 69),
    ("verbose-trace-discovery", "-v --unprivileged -sT -n -p 22 --packet-trace " + H % 73),
    ("stats-every", "--stats-every 1s -sT -Pn -n -p 21 " + H % 61),
    ("packet-trace-connect", "-sT -Pn -n -p 80,81 --packet-trace " + H % 53),
    ("packet-trace-script", "-sT -Pn -n -p 22 --script banner --packet-trace " + H % 64),
    ("spoof-mac", "-sS -Pn -n -p 22,81 --spoof-mac Apple " + H % 65),
    ("os-detection", "-O -sT -Pn -n -p 22 " + H % 54),
    ("unknown-option", "--no-such-flag " + H % 55),
    ("T9", "-T9 -p 80 " + H % 56),
    ("bad-port", "-sT -Pn -n -p 70000 " + H % 57),
    ("unresolved-target", "-sT -Pn -n -p 22 nope.invalid " + H % 58),
]

# Differences a line may show, with the reason. Kinds: "terminal" (masked terminal lines),
# "message" (refusal message text), "exit", "ports", "scripts".
ALLOWED = {
    "os-detection": ({"terminal"}, "OS detection (-O) is not implemented: nsefleet warns and "
                     "scans without it; nmap prints OS guesses"),
    "unknown-option": ({"message", "exit"}, "unknown options: nsefleet names the token "
                       "(\"unknown option '--no-such-flag'\") and exits 255 like nmap's getopt; "
                       "nmap's text comes from getopt"),
    "bad-port": ({"message"}, "port out of range: same refusal (exit 1), nsefleet's wording "
                 "names the bad token"),
    "debug-scripts": ({"terminal"}, "-d: the Timing report shows nsefleet's own values (Lua "
                      "5.4, 2 retries by default where nmap has 10); nmap's runlevel lines, 'Final "
                      "times for host', sending rates and data files read are not printed; the -v "
                      "lines, NSE: Starting/Finished lines, reasons and 'Scanned at' are equal"),
    "T9": ({"message"}, "same refusal; nsefleet's message also names the bad value"),
}

MASKS = [
    (re.compile(r"\(\d+(\.\d+)?s latency\)"), "(Xs latency)"),
    (re.compile(r"scanned in [\d.]+ seconds"), "scanned in X seconds"),
    (re.compile(r" at \d\d:\d\d(, [\d.]+s elapsed)?"), " at T"),
    (re.compile(r"\(\d+\.\d+s\)"), "(Xs)"),
    (re.compile(r"Starting (Nmap|nsefleet) .*"), "Starting"),
    (re.compile(r"^NSOCK INFO \[\d+\.\d+s\]"), "NSOCK INFO [Xs]"),
    # The script socket's own (ephemeral) port.
    (re.compile(r"^(NSE: (?:TCP|UDP|SSL) [\d.]+):\d+"), r"\1:PORT"),
    (re.compile(r"^(Spoofing MAC address \w\w:\w\w:\w\w):\w\w:\w\w:\w\w"), r"\1:XX:XX:XX"),
]
DROP = re.compile(r"^(Read data files from|\s+Raw packets sent|Service detection performed|"
                  r"NSE: Script (Pre|Post)-scanning|Nmap done at|# )")


def terminal(text):
    """Masked terminal lines: script output lines (compared through the XML) and volatile
    lines dropped, "Discovered open port" lines sorted."""
    out, disc = [], []
    for l in text.splitlines():
        if l.startswith("|") or DROP.match(l) or not l.strip():
            continue
        for rx, rep in MASKS:
            l = rx.sub(rep, l)
        (disc if l.startswith("Discovered open port") else out).append(l)
    return out + sorted(disc)


# Script output that counts what else is connected at that instant: vsftpd's STAT (ftp-syst)
# counts the sessions open, the scan's own included.
VOLATILE = re.compile(r"(client count was )\d+")


def xml_facts(path):
    """{addr: (status, reason, [(port, proto, state, reason, service...)], {(port, id): out})}."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    hosts = {}
    for h in root.iter("host"):
        a = h.find("address").get("addr")
        st = h.find("status")
        ports, scripts = [], {}
        for p in h.iter("port"):
            s = p.find("state")
            svc = p.find("service")
            sv = (svc.get("name"), svc.get("product"), svc.get("version")) if svc is not None else ()
            ports.append((p.get("portid"), p.get("protocol"), s.get("state"), s.get("reason"), sv))
            for sc in p.iter("script"):
                scripts[(p.get("portid"), sc.get("id"))] = VOLATILE.sub(r"\1N", sc.get("output"))
        for hs in h.iter("hostscript"):
            for sc in hs.iter("script"):
                scripts[("host", sc.get("id"))] = sc.get("output")
        hosts[a] = (st.get("state"), st.get("reason"), ports, scripts)
    return hosts


def run(argv, work, tag):
    xml = os.path.join(work, tag + ".xml")
    args = shlex.split(argv)
    refused = False
    try:
        r = subprocess.run(argv0[tag] + args + ["-oX", xml], capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    return r, xml


argv0 = {}


def message(text):
    lines = [l for l in text.splitlines() if l.strip() and l.strip() != "QUITTING!"
             and not l.startswith("See the output of nmap -h")]
    first = lines[0] if lines else ""
    return re.sub(r"\s+", " ", re.sub(r"^(nsefleet|nmap): ", "", first)).strip()


def inner(binary):
    argv0["nmap"] = ["nmap"]
    argv0["nsefleet"] = [binary, "scan"]
    work = tempfile.mkdtemp(prefix="nsefleet-clitable.")
    equal = 0
    for name, argv in TABLE:
        rn = run(argv, work, "nmap")
        rf = run(argv, work, "nsefleet")
        if rn is None or rf is None:
            check(False, "%s: both finish within 300 s" % name)
            continue
        (a, ax), (b, bx) = rn, rf
        diffs = {}
        if a.returncode != b.returncode:
            diffs["exit"] = "nmap %d, nsefleet %d" % (a.returncode, b.returncode)
        if a.returncode != 0 or b.returncode != 0:
            ma, mb = message(a.stderr + a.stdout), message(b.stderr)
            if ma != mb:
                diffs["message"] = "nmap %r, nsefleet %r" % (ma, mb)
        else:
            fa, fb = xml_facts(ax), xml_facts(bx)
            if fa is None or fb is None:
                diffs["ports"] = "XML missing or unreadable"
            else:
                pa = {k: v[:3] for k, v in fa.items()}
                pb = {k: v[:3] for k, v in fb.items()}
                if pa != pb:
                    diffs["ports"] = "nmap %s\n  nsefleet %s" % (pa, pb)
                sa = {k: v[3] for k, v in fa.items()}
                sb = {k: v[3] for k, v in fb.items()}
                if sa != sb:
                    diffs["scripts"] = "nmap %s\n  nsefleet %s" % (sa, sb)
            ta, tb = terminal(a.stdout), terminal(b.stdout)
            if ta != tb:
                import difflib
                diffs["terminal"] = "\n".join(difflib.unified_diff(ta, tb, "nmap", "nsefleet",
                                                                  n=0, lineterm=""))
            wa = [l for l in a.stderr.splitlines() if l.startswith(("WARNING", "Failed to resolve"))]
            wb = [l for l in b.stderr.splitlines() if l.startswith(("WARNING", "Failed to resolve"))]
            wa, wb = sorted(set(wa)), sorted(set(wb))  # nmap 7.93 repeats some of them
            if name != "os-detection" and wa != wb:
                diffs["terminal"] = diffs.get("terminal", "") + "\nstderr warnings: nmap %s, nsefleet %s" % (wa, wb)
        if not diffs:
            equal += 1
            check(True, "%s: equal (nsefleet scan %s)" % (name, argv))
            continue
        kinds, why = ALLOWED.get(name, (set(), ""))
        if set(diffs) <= kinds:
            check(True, "%s: allowed difference (%s): %s" % (name, ", ".join(sorted(diffs)), why))
        else:
            check(False, "%s: nsefleet scan %s differs from nmap in %s" % (name, argv, sorted(diffs)),
                  "\n".join("%s: %s" % kv for kv in diffs.items())[:3000])
    print("%d/%d command lines equal" % (equal, len(TABLE)), flush=True)
    # -D sends every probe from each decoy too (the lab has no route back to them).
    r = subprocess.run(argv0["nsefleet"] + shlex.split("-sS -Pn -n -p 80 --packet-trace -D "
                                                       "198.51.100.7,ME " + H % 63),
                       capture_output=True, text=True, timeout=120)
    sent = re.findall(r"^SENT \([\d.]+s\) TCP (\S+):\d+ > " + re.escape(H % 63) + r":80 S ",
                      r.stdout, re.M)
    check(r.returncode == 0 and "198.51.100.7" in sent and len(set(sent)) == 2,
          "-D: the SYN to 80 leaves from the decoy and from us (%s)" % sorted(set(sent)),
          r.stdout[-600:])
    # --packet-trace on script sockets: nmap's NSOCK lines (stderr), times masked.
    nsock = {}
    for tag in ("nmap", "nsefleet"):
        r = subprocess.run(argv0[tag] + shlex.split("-sT -Pn -n -p 22 --script banner "
                                                    "--packet-trace " + H % 66),
                           capture_output=True, text=True, timeout=120)
        nsock[tag] = [re.sub(r"^NSOCK INFO \[[\d.]+s\]", "NSOCK INFO [T]", l)
                      for l in r.stderr.splitlines() if l.startswith("NSOCK INFO")]
    check(nsock["nmap"] == nsock["nsefleet"] and len(nsock["nmap"]) >= 6,
          "--packet-trace: the NSOCK lines of a banner socket equal nmap's (%d lines)"
          % len(nsock["nsefleet"]),
          "nmap:\n  %s\nnsefleet:\n  %s" % ("\n  ".join(nsock["nmap"]), "\n  ".join(nsock["nsefleet"])))
    # A name with three addresses (a hosts file bound over /etc/hosts in a mount namespace of
    # this test's network namespace: no resolver is asked): nmap's "Other addresses for"
    # line, and --resolve-all scanning each address.
    hosts = os.path.join(work, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n" + "".join("%s multi.nsefleet.test\n" % (H % i)
                                                 for i in (70, 71, 72)))
    for argv in ("-sL -n multi.nsefleet.test", "-sL -n --resolve-all multi.nsefleet.test",
                 "-sT -Pn -n -p 80 multi.nsefleet.test",
                 "-sT -Pn -n -p 80 --resolve-all multi.nsefleet.test"):
        outs = {}
        for tag in ("nmap", "nsefleet"):
            cmd = " ".join(shlex.quote(a) for a in argv0[tag] + shlex.split(argv))
            r = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind %s /etc/hosts && exec %s"
                                % (shlex.quote(hosts), cmd)], capture_output=True, text=True,
                               timeout=120)
            outs[tag] = (r.returncode, terminal(r.stdout))
        want_reports = 3 if "--resolve-all" in argv else 1
        got = outs["nsefleet"][1]
        check(outs["nmap"] == outs["nsefleet"] and
              sum(l.startswith("Nmap scan report for multi.nsefleet.test") for l in got) == want_reports,
              "a name with 3 addresses: nsefleet scan %s equals nmap (%d reports)" % (argv, want_reports),
              "nmap %s\nnsefleet %s" % (outs["nmap"], outs["nsefleet"]))
    check(len(TABLE) >= 40, "the table has at least 40 command lines (%d)" % len(TABLE))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, "nsefleet-clitable-%d" % os.getpid(), 1500,
                     "the command-line table")
