#!/bin/bash
# Self-test of test/lab/lab.sh: start a lab in a fresh namespace, check with nmap that all six
# services answer on 127.0.0.1 and on another 127.0.1.x address, check the namespace has no
# interface but lo, stop it (twice) and check the namespace and its processes are gone.
# Exit 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB="$HERE/../lab/lab.sh"
[ "$(id -u)" = 0 ] || { echo "lab_selftest: SKIP (needs root)"; exit 77; }

export NSEFLEET_LAB_NS=nsefleet-labtest-$$
W=$(mktemp -d "${TMPDIR:-/tmp}/nsefleet-labtest.XXXXXX")
export NSEFLEET_LAB_DIR=$W
trap 'bash "$LAB" stop >/dev/null 2>&1; rm -rf "$W"' EXIT
bad=0
fail() { echo "lab_selftest: FAIL: $*"; bad=1; }

bash "$LAB" start || { echo "lab_selftest: FAIL: start"; exit 1; }

links=$(ip -n "$NSEFLEET_LAB_NS" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[ "$links" = "lo " ] || fail "namespace has interfaces other than lo: $links"
[ -z "$(ip -n "$NSEFLEET_LAB_NS" route show default)" ] || fail "namespace has a default route"

for addr in 127.0.0.1 127.0.1.200; do
  out=$(bash "$LAB" exec timeout 60 nmap -sT -Pn -n -p 21,22,80,443,6379,11211 -oG - "$addr")
  open=$(grep -o '[0-9]*/open/tcp' <<< "$out" | cut -d/ -f1 | sort -n | tr '\n' ' ')
  [ "$open" = "21 22 80 443 6379 11211 " ] || fail "$addr open ports are '$open'"
done
# The services must not be visible outside the namespace.
[ -z "$(ip netns identify $$)" ] || fail "test runs inside a namespace"

pids=$(ip netns pids "$NSEFLEET_LAB_NS" | tr '\n' ' ')
bash "$LAB" stop || fail "first stop failed"
bash "$LAB" stop || fail "second stop failed"
ip netns list | awk '{print $1}' | grep -qx "$NSEFLEET_LAB_NS" && fail "namespace still present"
# Zombies are dead (PID 1 here reaps reparented daemons lazily); anything else is a leak.
for p in $pids; do
  st=$(ps -o stat= -p "$p" 2>/dev/null)
  [ -n "$st" ] && [ "${st:0:1}" != Z ] && fail "process $p of the lab still alive ($st)"
done
[ -e "$W/lab.$NSEFLEET_LAB_NS" ] && fail "lab dir not removed"

[ $bad = 0 ] && echo "lab_selftest: PASS"
exit $bad
