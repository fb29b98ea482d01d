#!/usr/bin/env python3
"""Compare the NSE script results of two nmap-format XML files.

Usage: compare.py [-q] [--show-masked] [--per-script] [--expect IDS] [--known KEYS]
                  [--label TEXT] [--superset] A.xml B.xml

Each <script> element is keyed by (host address, port "N/proto" or "host"/"pre"/"post",
script id) and its `output` attribute is compared after masking values that legitimately
differ between two runs against the same services (dates, uptimes, pids, counters, memory
and CPU figures, clock skew).  Script order inside a port is ignored.

--superset accepts results that only B has (B found a result A lost, e.g. nmap under load):
every result of A must still be in B with equal output, except that a pre/post-rule result of a
script with such extra host results may hold extra lines (a post-rule that lists hosts, like
ssh-hostkey's duplicate keys, names the host A lost) as long as every line of A is in it.

Exit status: 0 when every key is present in both files with equal masked output, 1 on any
mismatch or missing key, or when A holds no scripts at all (so an empty run cannot pass),
2 on unreadable input.

--per-script also prints one verdict line per script id: "PASS <label><id>",
"FAIL <label><id>: <why>" or "KNOWN <label><id>: <why>".  --expect lists ids that must have
results (an id missing from both files fails: the lab did not exercise it).  --known lists
known runtime differences, "id" or "id@where" (where = "25/tcp", "host", "post"): a script
whose every failing key is known gets KNOWN, which does not make the exit status non-zero.
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
    # "TLS randomness does not represent time" is deterministic; dates and skew are not.
    "ssl-date": [(r"(?m);[^;\n]*from scanner time\.", "; <SKEW> from scanner time.")],
    "banner": [
        # SMTP greetings carry the server's clock.
        (r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}",
         "<SMTPDATE>"),
        # MySQL/MariaDB greeting: thread id and scramble follow the version string.
        (r"(?s)(\\x0A\d+\.\d+\.\d+-[^\\]*MariaDB[^\\]*\\x00).*", r"\1<THREADID+SALT>"),
    ],
    "mysql-info": [
        (r"(?m)^(\s*Thread ID:).*$", r"\1 <N>"),
        (r"(?m)^(\s*Salt:).*$", r"\1 <SALT>"),
    ],
    "ntp-info": [(r"(?m)^(\s*receive time stamp:).*$", r"\1 <DATETIME>")],
    "snmp-info": [(r"(?m)^(\s*snmpEngine(Time|Boots):).*$", r"\1 <N>")],
    "snmp-interfaces": [(r"(?m)^(\s*Traffic stats:).*$", r"\1 <N>")],
    "smb2-time": [(r"(?m)^(\s*(date|start_date):).*$", r"\1 <DATETIME>")],
}

# Scripts whose output is fully determined by the lab (certificate dates and fingerprints,
# host keys, banners, titles, file listings with fixed mtimes): compared without the
# generic date/time masks so formatting bugs in those fields are caught.
EXACT = {"ssl-cert", "ssh-hostkey", "banner", "http-title", "http-server-header", "http-headers",
         "ftp-anon", "http-methods", "http-robots.txt", "ssh2-enum-algos", "ssl-enum-ciphers"}


# Outputs whose item order comes from iterating a Lua hash table in the script itself
# (nmap 7.93 prints them in a different order from run to run): compared as sorted items.
def _sort_tokens(text):
    return " ".join(sorted(text.split()))


def _sort_caps_line(text):
    def fix(m):
        return m.group(1) + ", ".join(sorted(m.group(2).split(", ")))
    return re.sub(r"(?m)^(\s*Some Capabilities: )(.*)$", fix, text)


def _sort_key_blocks(text):
    # ssh-hostkey's postrule: one "Key <fp> used by:" block per key, in pairs() order.
    head, sep, rest = text.partition("\n")
    if not head.strip().startswith("Possible duplicate hosts"):
        return text
    blocks, cur = [], []
    for line in rest.split("\n"):
        if line.lstrip().startswith("Key ") and cur:
            blocks.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return head + sep + "\n".join(sorted(blocks))


NORMALIZERS = {
    "imap-capabilities": _sort_tokens,
    "pop3-capabilities": _sort_tokens,
    "mysql-info": _sort_caps_line,
    "ssh-hostkey": _sort_key_blocks,
}

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
    norm = NORMALIZERS.get(script_id)
    return norm(text) if norm else text


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


def per_script_verdicts(a, bad, args, known):
    """Prints PASS/FAIL/KNOWN per script id; returns True if any FAIL was printed."""
    ids = {k[2] for k in a} | set(bad)
    expect = [e.strip() for e in args.expect.split(",") if e.strip()]
    ids |= set(expect)
    failed = False
    for sid in sorted(ids):
        name = args.label + sid
        n = sum(1 for k in a if k[2] == sid)
        if sid not in bad:
            if n == 0:
                failed = True
                print(f"FAIL {name}: no result from either scanner (lab does not exercise it)")
            else:
                print(f"PASS {name} ({n} result{'s' if n != 1 else ''})")
            continue
        keys = bad[sid]
        why = "; ".join(f"{k[0]} {k[1]} {r}" for k, r in keys)
        if all(sid in known or f"{sid}@{k[1]}" in known for k, _ in keys):
            print(f"KNOWN {name}: {why}")
        else:
            failed = True
            print(f"FAIL {name}: {why}")
    for k in sorted(known):
        sid = k.split("@")[0]
        if sid in ids and sid not in bad:
            print(f"note: known difference {k} matched in this run (remove it once fixed)")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("-q", "--quiet", action="store_true", help="summary only, no diffs")
    ap.add_argument("--show-masked", action="store_true",
                    help="print every masked output of A (to review the masks)")
    ap.add_argument("--max-diffs", type=int, default=50, help="diffs printed at most")
    ap.add_argument("--per-script", action="store_true", help="print a verdict per script id")
    ap.add_argument("--expect", default="", help="comma-separated ids that must have results")
    ap.add_argument("--known", default="", help="comma-separated known differences: id or id@where")
    ap.add_argument("--label", default="", help="prefix for per-script verdict names")
    ap.add_argument("--superset", action="store_true",
                    help="results only B has are allowed (A lost them); A's must all be in B")
    args = ap.parse_args()
    known = {k.strip() for k in args.known.split(",") if k.strip()}
    bad = {}  # script id -> [(key, reason)]

    a, b = collect(args.a), collect(args.b)
    keys = sorted(set(a) | set(b), key=_addr_sort)
    matched = mismatched = only_a = only_b = printed = 0

    def fmt(key):
        return f"{key[0]} {key[1]} {key[2]}"

    extra_ids = {k[2] for k in b if k not in a and k[1] not in ("pre", "post")}

    def lines_within(ma, mb):
        """True when every line of ma is in mb (as a multiset)."""
        pool = {}
        for line in "\n".join(mb).splitlines():
            pool[line] = pool.get(line, 0) + 1
        for line in "\n".join(ma).splitlines():
            if not pool.get(line):
                return False
            pool[line] -= 1
        return True

    for key in keys:
        if key not in b:
            only_a += 1
            bad.setdefault(key[2], []).append((key, "missing in B"))
            print(f"MISSING in {args.b}: {fmt(key)}")
            continue
        if key not in a:
            only_b += 1
            if args.superset:
                print(f"EXTRA in {args.b}: {fmt(key)}")
                continue
            bad.setdefault(key[2], []).append((key, "missing in A"))
            print(f"MISSING in {args.a}: {fmt(key)}")
            continue
        ma = sorted(mask(key[2], o) for o in a[key])
        mb = sorted(mask(key[2], o) for o in b[key])
        if args.show_masked:
            print(f"== {fmt(key)}\n" + "\n--\n".join(ma))
        if ma == mb:
            matched += 1
            continue
        if (args.superset and key[1] in ("pre", "post") and key[2] in extra_ids
                and lines_within(ma, mb)):
            matched += 1
            print(f"EXTRA LINES in {args.b}: {fmt(key)} (names results only B has)")
            continue
        mismatched += 1
        bad.setdefault(key[2], []).append((key, "differs"))
        print(f"MISMATCH: {fmt(key)}")
        if not args.quiet and printed < args.max_diffs:
            printed += 1
            la = "\n--\n".join(ma).splitlines()
            lb = "\n--\n".join(mb).splitlines()
            for line in difflib.unified_diff(la, lb, f"{args.a} {fmt(key)}",
                                             f"{args.b} {fmt(key)}", lineterm="", n=3):
                print("  " + line)

    unknown_fail = bool(mismatched or only_a or (only_b and not args.superset))
    if args.per_script:
        unknown_fail = per_script_verdicts(a, bad, args, known)

    hosts_a = {k[0] for k in a if k[0] != "-"}
    print(f"compare: results: {sum(len(v) for v in a.values())} in A, "
          f"{sum(len(v) for v in b.values())} in B")
    print(f"compare: {len(keys)} script results ({len(hosts_a)} hosts in A): {matched} match, "
          f"{mismatched} differ, {only_a} only in A, {only_b} only in B")
    if not a:
        print(f"compare: FAIL: {args.a} contains no script results")
        return 1
    if unknown_fail:
        print("compare: FAIL")
        return 1
    if mismatched or only_a or (only_b and not args.superset):
        print("compare: OK except known differences")
        return 0
    print("compare: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
