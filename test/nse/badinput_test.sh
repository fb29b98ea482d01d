#!/bin/bash
# Bad command-line input: every case must exit non-zero (and < 128: no crash, no signal),
# printing a one-line message on stderr that names the offending token.
#   test/nse/badinput_test.sh [path/to/nsefleet]
# Exit status 0 when every case passes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/build/nsefleet}
TMP=$(mktemp -d /tmp/nsefleet-badinput.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

printf 'description = "x"\ncategories = {"safe"}\naction = function( \nprerule = function() return true end\n' \
  > "$TMP/syntax_error.nse"
printf 'description = "x"\ncategories = {"safe"}\nprerule = function() return true end\n' \
  > "$TMP/no_action.nse"
printf 'description = "x"\ncategories = {"safe"}\nprerule = function() return true end\naction = function() return "ok" end\n' \
  > "$TMP/fine.nse"

pass=0
fail=0

# check NAME TOKEN ARGS... : runs BIN scan ARGS, expects failure naming TOKEN.
check() {
  local name=$1 token=$2
  shift 2
  local out err rc lines
  timeout 30 "$BIN" scan "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  err=$(cat "$TMP/err")
  lines=$(grep -c . "$TMP/err")
  local why=""
  if [ "$rc" -eq 0 ]; then
    why="exit status 0"
  elif [ "$rc" -ge 124 ] && [ "$rc" -ne 255 ]; then  # 255: nmap's status for an unknown option
    why="exit status $rc (timeout, crash or signal)"
  elif [ "$lines" -ne 1 ]; then
    why="expected a one-line message on stderr, got $lines lines"
  elif ! grep -qF -- "$token" "$TMP/err"; then
    why="message does not name '$token'"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1))
    echo "PASS $name (rc=$rc): $err"
  else
    fail=$((fail + 1))
    echo "FAIL $name: $why"
    echo "     command: $BIN scan $*"
    sed 's/^/     stderr: /' "$TMP/err" | head -5
  fi
}

T=127.0.0.1
check unknown-flag      "--bogus-flag"  -Pn -n --bogus-flag $T
check port-too-big      "70000"         -Pn -n -p 70000 $T
check port-too-big      "70000"         -Pn -n -sT -p 70000 $T
check sn-with-p         "-p"            -Pn -n -sn -p 22 $T
check port-range-bad    "1-x"           -Pn -n -p 1-x $T
check cidr-33           "127.0.0.0/33"  -Pn -n -sn 127.0.0.0/33
check script-missing    "nosuchscript"  -Pn -n -sn --script nosuchscript $T
check script-not-all    "not all"       -Pn -n -sn --script "not all" $T
check script-syntax     "syntax_error.nse" -Pn -n -sn --script "$TMP/syntax_error.nse" $T
check script-no-action  "action"        -Pn -n -sn --script "$TMP/no_action.nse" $T
check args-double-eq    "x=a=b"         -Pn -n -sn --script "$TMP/fine.nse" --script-args "x=a=b" $T
check args-open-brace   "k={"           -Pn -n -sn --script "$TMP/fine.nse" --script-args "k={" $T
check timing-T9         "T9"            -Pn -n -sn -T9 $T
check max-hostgroup     "max-hostgroup"            -Pn -n -sn --max-hostgroup x $T
check workers-too-many  "--workers"     -Pn -n -sn --workers 5000 $T
check script-timeout    "5x"            -Pn -n -sn --script "$TMP/fine.nse" --script-timeout 5x $T
check missing-iL        "$TMP/no-such-targets.txt" -Pn -n -sn -iL "$TMP/no-such-targets.txt"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
