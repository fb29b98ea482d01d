#!/usr/bin/env python3
"""Compare the NSE script results of two nmap-format XML files.

Usage: compare.py [-q] [--show-masked] A.xml B.xml

Each <script> element is keyed by (host address, port "N/proto" or "host"/"pre"/"post",
script id) and its `output` attribute is compared after masking values that legitimately
differ between two runs against the same services (dates, uptimes, pids, counters, memory
and CPU figures, clock skew).  Script order inside a port is ignored.

Exit status: 0 when every key is present in both files with equal masked output, 1 on any
mismatch or missing key, or when A holds no scripts at all (so an empty run cannot pass),
2 on unreadable input.
"""
import argparse
import difflib
import re
import sys
import xml.etree.ElementTree as ET

# --- masks -------------------------------------------------------------------------------
# (pattern, replacement); applied line by line with re.M where anchors are used.

GENERIC_MASKS = [
    # RFC 1123 / HTTP dates: "Sat, 21 Nov 2026 05:54:03 GMT"
    (r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}( GMT| [+-]\d{4})?", "<HTTPDATE>"),
    # ISO 8601 date-times: "2026-11-21T05:54:02", optional fraction and zone
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", "<DATETIME>"),
    # asctime style: "Sat Nov 21 05:54:03 2026"
    (r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}", "<DATETIME>"),
    # bare clock times
    (r"\b\d{2}:\d{2}:\d{2}(\.\d+)?\b", "<TIME>"),
    # clock skew ("clock-skew: mean: -1s, deviation: 2s, median: 0s")
    (r"(?i)(clock[- ]skew[^\n]*?:)[^\n]*", r"\1 <SKEW>"),
    # nonces and challenges (hex or base64 runs after a nonce-like key)
    (r"(?i)\b((client|server)?[_-]?(nonce|challenge|cookie)\s*[=:]\s*)[0-9A-Za-z+/=]{8,}", r"\1<NONCE>"),
    # uptimes, pids
    (r"(?im)^(\s*(System )?uptime:).*$", r"\1 <UPTIME>"),
    (r"(?im)^(\s*(process id|pid):).*$", r"\1 <PID>"),
]

SCRIPT_MASKS = {
    "redis-info": [
        (r"(?m)^(\s*Process ID:).*$", r"\1 <PID>"),
        (r"(?m)^(\s*Used CPU \((sys|user)\):).*$", r"\1 <CPU>"),
        (r"(?m)^(\s*Connected clients:).*$", r"\1 <N>"),
        (r"(?m)^(\s*Connected slaves:).*$", r"\1 <N>"),
        (r"(?m)^(\s*Used memory:).*$", r"\1 <MEM>"),
        (r"(?m)^(\s*Uptime:).*$", r"\1 <UPTIME>"),
        (r"(?m)^(\s*Last saved:).*$", r"\1 <DATETIME>"),
        # The peers listed by CLIENT LIST depend on what else is connected at that instant.
        (r"(?m)^(\s*Client connections:)\s*\n(?:\s{4,}\S.*(?:\n|$))+", r"\1 <CLIENTS>\n"),
    ],
    "memcached-info": [
        (r"(?m)^(\s*Process ID:).*$", r"\1 <PID>"),
        (r"(?m)^(\s*Uptime:).*$", r"\1 <UPTIME>"),
        (r"(?m)^(\s*Server time:).*$", r"\1 <DATETIME>"),
        (r"(?m)^(\s*Used CPU \((user|system)\):).*$", r"\1 <CPU>"),
        (r"(?m)^(\s*(Current|Total) connections:).*$", r"\1 <N>"),
        (r"(?m)^(\s*(Current|Total) items:).*$", r"\1 <N>"),
        (r"(?m)^(\s*Bytes (used|read|written)?:?).*$", r"\1 <N>"),
    ],
    "ftp-syst": [
        (r"(client count was) \d+", r"\1 <N>"),
    ],
    "http-headers": [
        (r"(?m)^(\s*Date:).*$", r"\1 <HTTPDATE>"),
        (r"(?m)^(\s*(Expires|Age):).*$", r"\1 <VOLATILE>"),
        (r"(?m)^(\s*Set-Cookie:\s*[^=;\s]+=)[^;\n]*", r"\1<COOKIE>"),
    ],
    "http-date": [
        (r"(?m)^(\s*(Date|http-date):).*$", r"\1 <DATETIME>"),
    ],
    "ssl-date": [(r"(?s).*", "<SSLDATE>")],
    "ntp-info": [(r"(?m)^(\s*receive time stamp:).*$", r"\1 <DATETIME>")],
    "smb2-time": [(r"(?m)^(\s*(date|start_date):).*$", r"\1 <DATETIME>")],
}

# Scripts whose output is fully determined by the lab (certificate dates and fingerprints,
# host keys, banners, titles, file listings with fixed mtimes): compared without the
# generic date/time masks so formatting bugs in those fields are caught.
EXACT = {"ssl-cert", "ssh-hostkey", "banner", "http-title", "http-server-header", "http-headers",
         "ftp-anon", "http-methods", "http-robots.txt", "ssh2-enum-algos", "ssl-enum-ciphers"}

_compiled = {}


def _rules(script_id):
    if script_id not in _compiled:
        rules = list(SCRIPT_MASKS.get(script_id, []))
        if script_id not in EXACT:
            rules += GENERIC_MASKS
        _compiled[script_id] = [(re.compile(p), r) for p, r in rules]
    return _compiled[script_id]


def mask(script_id, text):
    for rx, rep in _rules(script_id):
        text = rx.sub(rep, text)
    return text


# --- reading -----------------------------------------------------------------------------

def host_key(host):
    addrs = host.findall("address")
    for kind in ("ipv4", "ipv6"):
        for a in addrs:
            if a.get("addrtype") == kind:
                return a.get("addr")
    return addrs[0].get("addr") if addrs else "?"


def collect(path):
    """Returns {(host, where, id): [output, ...]} for every <script> in the file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"compare: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)
    out = {}

    def add(key, el):
        out.setdefault(key, []).append(el.get("output", ""))

    for where, tag in (("pre", "prescript"), ("post", "postscript")):
        for block in root.iter(tag):
            for s in block.findall("script"):
                add(("-", where, s.get("id")), s)
    for host in root.iter("host"):
        h = host_key(host)
        ports = host.find("ports")
        if ports is not None:
            for p in ports.findall("port"):
                where = f"{p.get('portid')}/{p.get('protocol')}"
                for s in p.findall("script"):
                    add((h, where, s.get("id")), s)
        hs = host.find("hostscript")
        if hs is not None:
            for s in hs.findall("script"):
                add((h, "host", s.get("id")), s)
    return out


def _addr_sort(key):
    h, where, sid = key
    try:
        hk = (0, tuple(int(x) for x in h.split(".")))
    except ValueError:
        hk = (1, (h,))
    order = {"pre": (0, 0), "host": (2, 0), "post": (3, 0)}
    wk = order.get(where)
    if wk is None:
        num = where.split("/")[0]
        wk = (1, int(num) if num.isdigit() else 0)
    return (0 if where == "pre" else 1, hk, wk, where, sid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("-q", "--quiet", action="store_true", help="summary only, no diffs")
    ap.add_argument("--show-masked", action="store_true",
                    help="print every masked output of A (to review the masks)")
    ap.add_argument("--max-diffs", type=int, default=50, help="diffs printed at most")
    args = ap.parse_args()

    a, b = collect(args.a), collect(args.b)
    keys = sorted(set(a) | set(b), key=_addr_sort)
    matched = mismatched = only_a = only_b = printed = 0

    def fmt(key):
        return f"{key[0]} {key[1]} {key[2]}"

    for key in keys:
        if key not in b:
            only_a += 1
            print(f"MISSING in {args.b}: {fmt(key)}")
            continue
        if key not in a:
            only_b += 1
            print(f"MISSING in {args.a}: {fmt(key)}")
            continue
        ma = sorted(mask(key[2], o) for o in a[key])
        mb = sorted(mask(key[2], o) for o in b[key])
        if args.show_masked:
            print(f"== {fmt(key)}\n" + "\n--\n".join(ma))
        if ma == mb:
            matched += 1
            continue
        mismatched += 1
        print(f"MISMATCH: {fmt(key)}")
        if not args.quiet and printed < args.max_diffs:
            printed += 1
            la = "\n--\n".join(ma).splitlines()
            lb = "\n--\n".join(mb).splitlines()
            for line in difflib.unified_diff(la, lb, f"{args.a} {fmt(key)}",
                                             f"{args.b} {fmt(key)}", lineterm="", n=3):
                print("  " + line)

    hosts_a = {k[0] for k in a if k[0] != "-"}
    print(f"compare: {len(keys)} script results ({len(hosts_a)} hosts in A): {matched} match, "
          f"{mismatched} differ, {only_a} only in A, {only_b} only in B")
    if not a:
        print(f"compare: FAIL: {args.a} contains no script results")
        return 1
    if mismatched or only_a or only_b:
        print("compare: FAIL")
        return 1
    print("compare: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
