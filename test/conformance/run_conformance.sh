#!/bin/bash
# Conformance against nmap 7.93 on the service lab (test/lab/lab.sh with its extra services,
# own network namespace):
#  1. nmap and nsefleet scan 127.0.0.1 (every lab port) with the same scripts; compare.py
#     compares each script's outputs after masking dates, pids and counters.
#  2. both scan 127.0.1.1-16:22 with ssh-hostkey (ssh_hostkey=full), incl. its postrule.
#  3. nsefleet scans 127.0.1.0/24 (256 hosts); its XML must validate against nmap.dtd and
#     report 256 hosts up.
# Prints one PASS/FAIL/KNOWN line per script and check, then "conformance: N passed, M failed".
# KNOWN = a listed runtime difference (KNOWN_DIFFS below): reported, not counted as failed.
# Exit 0 = pass, 1 = fail, 77 = skipped (no root/netns).
# Env: NSEFLEET_BIN       scanner command (default "<repo>/build/nsefleet scan"; "nmap" to
#                         dry-run this script with nmap in both roles)
#      NSEFLEET_NMAP      reference command (default nmap)
#      NSEFLEET_CONF_DIR  keep outputs here (default: a temp dir, deleted on PASS)
#      NSEFLEET_CONF_TIMEOUT  seconds per scan (default 300 single host, 900 for 256 hosts)
#      NSEFLEET_CONF_SKIP_256=1  skip step 3
#      NSEFLEET_CONF_STRICT=1    known differences count as failures
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LAB="$ROOT/test/lab/lab.sh"
read -r -a SCANNER <<< "${NSEFLEET_BIN:-$ROOT/build/nsefleet scan}"
read -r -a NMAP <<< "${NSEFLEET_NMAP:-nmap}"
T1=${NSEFLEET_CONF_TIMEOUT:-300}
T256=${NSEFLEET_CONF_TIMEOUT:-900}
PORTS=21,22,80,443,6379,11211
SCRIPTS=banner,http-title,http-server-header,http-headers,http-methods,ftp-anon,ftp-syst,ssl-cert,redis-info,memcached-info
# Single-host run: the lab's extra services (NSEFLEET_LAB_EXTRA) and their scripts too.
# (rsync-list-modules is left out: nmap 7.93's rsync.lua rejects rsync 3.2's greeting.)
PORTS1=$PORTS,25,53,110,111,143,389,445,3306
SCRIPTS1=$SCRIPTS,ssh-hostkey,ssh2-enum-algos,tls-alpn,ssl-date,ssl-enum-ciphers,http-robots.txt,http-ls
SCRIPTS1=$SCRIPTS1,smtp-commands,smtp-open-relay,dns-nsid,pop3-capabilities,imap-capabilities,rpcinfo
SCRIPTS1=$SCRIPTS1,ldap-rootdse,smb-protocols,smb-os-discovery,smb2-security-mode,smb2-time
SCRIPTS1=$SCRIPTS1,smb2-capabilities,mysql-info,mysql-empty-password
ARGS1=http-ls.url=/pub/
# Runtime differences from nmap still to be fixed: "script" or "script@port/proto|host|post".
# Each is still compared and reported (KNOWN); remove an entry once it matches. None now.
KNOWN_DIFFS=${NSEFLEET_CONF_KNOWN-}
[ "${NSEFLEET_CONF_STRICT:-0}" = 1 ] && KNOWN_DIFFS=""
HOSTS16=127.0.1.1-16
DTD=/usr/share/nmap/nmap.dtd

export NSEFLEET_LAB_NS=nsefleet-conf-$$ NSEFLEET_LAB_EXTRA=1
keep=0
if [ -n "${NSEFLEET_CONF_DIR:-}" ]; then W=$NSEFLEET_CONF_DIR; mkdir -p "$W"; keep=1
else W=$(mktemp -d "${TMPDIR:-/tmp}/nsefleet-conf.XXXXXX"); fi
export NSEFLEET_LAB_DIR=$W

failures=() passes=0 knowns=()
fail() { failures+=("$*"); echo "FAIL $*"; }
pass() { passes=$((passes + 1)); echo "PASS $*"; }
# tally FILE: counts compare.py's per-script verdict lines.
tally() {
  local verdict rest
  while read -r verdict rest; do
    case "$verdict" in
      PASS) passes=$((passes + 1));;
      FAIL) failures+=("${rest%%:*}");;
      KNOWN) knowns+=("${rest%%:*}");;
    esac
  done < <(grep -E '^(PASS|FAIL|KNOWN) ' "$1")
}
finish() {
  local rc=$?
  trap - EXIT INT TERM
  bash "$LAB" stop >/dev/null 2>&1 || echo "conformance: warning: lab stop failed for $NSEFLEET_LAB_NS"
  if [ "${SKIPPED:-0}" = 1 ]; then exit 77; fi
  [ "$rc" = 0 ] || failures+=("interrupted (rc $rc)")
  if [ ${#knowns[@]} -gt 0 ]; then
    echo "conformance: known differences (reported, not counted): ${knowns[*]}"
  fi
  echo "conformance: took ${SECONDS}s"
  if [ ${#failures[@]} -eq 0 ]; then
    [ $keep = 0 ] && rm -rf "$W"
    echo "conformance: $passes passed, 0 failed"
    exit 0
  fi
  echo "conformance: outputs kept in $W"
  local joined; joined=$(printf '%s; ' "${failures[@]}")
  echo "conformance: failed: ${joined%; }"
  echo "conformance: $passes passed, ${#failures[@]} failed"
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  echo "conformance: SKIP: needs root and iproute2 for a network namespace"; SKIPPED=1; exit 77
fi
if ! command -v "${SCANNER[0]}" >/dev/null 2>&1; then
  fail "scanner not found: ${SCANNER[0]} (build first, or set NSEFLEET_BIN)"; exit 1
fi
bash "$LAB" start || { fail "lab did not start"; exit 1; }

# run NAME TIMEOUT CMD... : runs a scan in the namespace, logging to $W/NAME.log.
run() {
  local name=$1 t=$2; shift 2
  local start=$SECONDS rc
  bash "$LAB" exec timeout -k 10 "$t" "$@" >"$W/$name.log" 2>&1
  rc=$?
  echo "conformance: $name: exit $rc in $((SECONDS - start))s"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then fail "$name timed out after ${t}s"; return 1; fi
  if [ $rc -ne 0 ]; then fail "$name exited $rc (log $W/$name.log)"; tail -5 "$W/$name.log" | sed 's/^/    /'; return 1; fi
  if [ ! -s "$W/$name.xml" ]; then fail "$name wrote no XML"; return 1; fi
  return 0
}

# validate NAME: nsefleet's XML $W/NAME.xml against nmap.dtd.
validate() {
  if xmllint --noout --dtdvalid "$DTD" "$W/$1.xml" 2>"$W/$1.dtd.err"; then pass "xml-dtd:$1"
  else fail "xml-dtd:$1"; head -5 "$W/$1.dtd.err" | sed 's/^/    /'; fi
}
# compare NAME LABEL EXPECT: nmap's $W/nmap-NAME.xml against nsefleet's $W/NAME.xml.
compare() {
  python3 "$HERE/compare.py" --per-script --label "$2" --expect "$3" --known "$KNOWN_DIFFS" \
    "$W/nmap-$1.xml" "$W/$1.xml" > "$W/compare-$1.txt"
  local rc=$?
  grep -vE '^(PASS|FAIL|KNOWN) ' "$W/compare-$1.txt" | grep -vE '^(MISMATCH|MISSING)' | sed 's/^/    /'
  grep -E '^(PASS|FAIL|KNOWN|note:) ' "$W/compare-$1.txt"
  tally "$W/compare-$1.txt"
  [ $rc -le 1 ] || fail "compare:$1 (unreadable XML, rc $rc)"
}

# --- 1. single host, nmap vs nsefleet ------------------------------------------------------
COMMON1=(-sT -Pn -n -p "$PORTS1" --script "$SCRIPTS1" --script-args "$ARGS1")
if run nmap-nsefleet "$T1" "${NMAP[@]}" "${COMMON1[@]}" 127.0.0.1 -oX "$W/nmap-nsefleet.xml" &&
   run nsefleet "$T1" "${SCANNER[@]}" "${COMMON1[@]}" 127.0.0.1 -oX "$W/nsefleet.xml"; then
  validate nsefleet
  compare nsefleet "" "$SCRIPTS1"
fi

# --- 2. 16 hosts, ssh-hostkey full with its postrule ---------------------------------------
COMMON16=(-sT -Pn -n -p 22 --script ssh-hostkey --script-args ssh_hostkey=full)
if run nmap-nsefleet16 "$T1" "${NMAP[@]}" "${COMMON16[@]}" "$HOSTS16" -oX "$W/nmap-nsefleet16.xml" &&
   run nsefleet16 "$T1" "${SCANNER[@]}" "${COMMON16[@]}" "$HOSTS16" -oX "$W/nsefleet16.xml"; then
  validate nsefleet16
  # ssh2.lua (stock nselib) sends its DH value as a negative mpint in about 1 key exchange
  # of 512, and sshd drops that connection: a host's ssh-hostkey goes missing, in nmap and
  # nsefleet alike (~3% of 16-host runs each). On a difference both run once more, said here.
  if ! python3 "$HERE/compare.py" -q "$W/nmap-nsefleet16.xml" "$W/nsefleet16.xml" >/dev/null 2>&1; then
    echo "conformance: 16-host ssh-hostkey differs; nmap and nsefleet run once more (ssh2.lua mpint case)"
    run nmap-nsefleet16 "$T1" "${NMAP[@]}" "${COMMON16[@]}" "$HOSTS16" -oX "$W/nmap-nsefleet16.xml"
    run nsefleet16 "$T1" "${SCANNER[@]}" "${COMMON16[@]}" "$HOSTS16" -oX "$W/nsefleet16.xml"
  fi
  compare nsefleet16 "16hosts:" ssh-hostkey
  # The postrule's duplicate-key summary must be there (compare.py checks it is equal).
  if grep -q '<postscript>' "$W/nsefleet16.xml" && grep -q 'Possible duplicate hosts' "$W/nsefleet16.xml"; then
    pass "16hosts:ssh-hostkey-postrule-present"
  else fail "16hosts:ssh-hostkey-postrule-present"; fi
fi

# --- 2. 256 hosts ----------------------------------------------------------------------------
if [ "${NSEFLEET_CONF_SKIP_256:-0}" != 1 ]; then
  COMMON=(-sT -Pn -n -p "$PORTS" --script "$SCRIPTS")
  if run nsefleet256 "$T256" "${SCANNER[@]}" "${COMMON[@]}" 127.0.1.0/24 -oX "$W/nsefleet256.xml"; then
    validate nsefleet256
    # Hosts up, and how many of them carry every script result the single-host run had.
    summary=$(python3 - "$W/nsefleet256.xml" "$W/nsefleet.xml" "$PORTS" "$SCRIPTS" <<'PY'
import sys, xml.etree.ElementTree as ET
def per_host(path):
    res = {}
    for h in ET.parse(path).getroot().iter("host"):
        st = h.find("status")
        if st is None or st.get("state") != "up":
            continue
        a = h.find("address").get("addr")
        res[a] = {(p.get("portid"), s.get("id")) for p in h.iter("port") for s in p.findall("script")}
    return res
big = per_host(sys.argv[1])
try:
    ref = next(iter(per_host(sys.argv[2]).values()), set())
    # The single-host run covers more ports and scripts; keep those of the 256-host run.
    ports, ids = set(sys.argv[3].split(",")), set(sys.argv[4].split(","))
    ref = {(p, s) for p, s in ref if p in ports and s in ids}
except Exception:
    ref = set()
complete = sum(1 for s in big.values() if ref <= s)
print(len(big), complete, len(ref))
PY
)
    read -r up complete nref <<< "${summary:-0 0 0}"
    echo "conformance: 256-host run: $up hosts up, $complete with all $nref script results of the single-host run"
    if [ "$up" = 256 ]; then pass "256hosts:all-up"; else fail "256hosts:all-up ($up hosts up, expected 256)"; fi
    if [ "$complete" != "$up" ]; then
      echo "conformance: note: $((up - complete)) hosts miss some script results (not a failure by itself)"
    fi
  fi
fi
exit 0
