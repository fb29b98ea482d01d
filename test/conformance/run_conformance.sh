#!/bin/bash
# Conformance against nmap 7.93 on the service lab (test/lab/lab.sh, own network namespace):
#  1. nmap and nsefleet scan 127.0.0.1 with the same scripts; compare.py compares outputs.
#  2. nsefleet scans 127.0.1.0/24 (256 hosts); its XML must validate against nmap.dtd and
#     report 256 hosts up.
# Prints one PASS/FAIL line at the end; exit 0 = pass, 1 = fail, 77 = skipped (no root/netns).
# Env: NSEFLEET_BIN       scanner command (default "<repo>/build/nsefleet scan"; "nmap" to
#                         dry-run this script with nmap in both roles)
#      NSEFLEET_NMAP      reference command (default nmap)
#      NSEFLEET_CONF_DIR  keep outputs here (default: a temp dir, deleted on PASS)
#      NSEFLEET_CONF_TIMEOUT  seconds per scan (default 300 single host, 900 for 256 hosts)
#      NSEFLEET_CONF_SKIP_256=1  skip step 2
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
DTD=/usr/share/nmap/nmap.dtd

export NSEFLEET_LAB_NS=nsefleet-conf-$$
keep=0
if [ -n "${NSEFLEET_CONF_DIR:-}" ]; then W=$NSEFLEET_CONF_DIR; mkdir -p "$W"; keep=1
else W=$(mktemp -d "${TMPDIR:-/tmp}/nsefleet-conf.XXXXXX"); fi
export NSEFLEET_LAB_DIR=$W

failures=()
fail() { failures+=("$*"); echo "conformance: FAIL: $*"; }
finish() {
  local rc=$?
  trap - EXIT INT TERM
  bash "$LAB" stop >/dev/null 2>&1 || echo "conformance: warning: lab stop failed for $NSEFLEET_LAB_NS"
  if [ "${SKIPPED:-0}" = 1 ]; then exit 77; fi
  if [ ${#failures[@]} -eq 0 ] && [ "$rc" = 0 ]; then
    [ $keep = 0 ] && rm -rf "$W"
    echo "conformance: PASS"
    exit 0
  fi
  [ ${#failures[@]} -eq 0 ] && failures+=("interrupted (rc $rc)")
  echo "conformance: outputs kept in $W"
  local joined; joined=$(printf '%s; ' "${failures[@]}")
  echo "conformance: FAIL (${#failures[@]}): ${joined%; }"
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

# --- 1. single host, nmap vs nsefleet ------------------------------------------------------
COMMON=(-sT -Pn -n -p "$PORTS" --script "$SCRIPTS")
if run nmap "$T1" "${NMAP[@]}" "${COMMON[@]}" 127.0.0.1 -oX "$W/nmap.xml" &&
   run nsefleet "$T1" "${SCANNER[@]}" "${COMMON[@]}" 127.0.0.1 -oX "$W/nsefleet.xml"; then
  xmllint --noout --dtdvalid "$DTD" "$W/nsefleet.xml" 2>"$W/dtd1.err" ||
    { fail "nsefleet.xml does not validate against nmap.dtd"; head -5 "$W/dtd1.err" | sed 's/^/    /'; }
  python3 "$HERE/compare.py" "$W/nmap.xml" "$W/nsefleet.xml" | tee "$W/compare.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || fail "script outputs differ from nmap (see above)"
fi

# --- 2. 256 hosts ----------------------------------------------------------------------------
if [ "${NSEFLEET_CONF_SKIP_256:-0}" != 1 ]; then
  if run nsefleet256 "$T256" "${SCANNER[@]}" "${COMMON[@]}" 127.0.1.0/24 -oX "$W/nsefleet256.xml"; then
    xmllint --noout --dtdvalid "$DTD" "$W/nsefleet256.xml" 2>"$W/dtd256.err" ||
      { fail "nsefleet256.xml does not validate against nmap.dtd"; head -5 "$W/dtd256.err" | sed 's/^/    /'; }
    # Hosts up, and how many of them carry every script result the single-host run had.
    summary=$(python3 - "$W/nsefleet256.xml" "$W/nsefleet.xml" <<'PY'
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
except Exception:
    ref = set()
complete = sum(1 for s in big.values() if ref <= s)
print(len(big), complete, len(ref))
PY
)
    read -r up complete nref <<< "${summary:-0 0 0}"
    echo "conformance: 256-host run: $up hosts up, $complete with all $nref script results of the single-host run"
    [ "$up" = 256 ] || fail "256-host run reports $up hosts up, expected 256"
    if [ "$complete" != "$up" ]; then
      echo "conformance: note: $((up - complete)) hosts miss some script results (not a failure by itself)"
    fi
  fi
fi
exit 0
