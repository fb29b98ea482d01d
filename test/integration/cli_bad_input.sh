#!/bin/bash
# Bad command-line input must be refused cleanly: non-zero exit (not a signal, not a hang,
# no core file) and a short message on stderr naming the offending token.
#
# Usage: cli_bad_input.sh [CASE...]    (no CASE = all; `--list` prints the case names)
# Env:   NSEFLEET_BIN  scanner command (default "<repo>/build/nsefleet scan")
# Exit:  0 all selected cases pass, 1 otherwise, 77 (skip) when the binary is missing and
#        NSEFLEET_SKIP_MISSING=1.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
read -r -a SCANNER <<< "${NSEFLEET_BIN:-$ROOT/build/nsefleet scan}"
MAX_LINES=${NSEFLEET_MAX_ERR_LINES:-2}   # the message, plus at most one hint line

W=$(mktemp -d "${TMPDIR:-/tmp}/nsefleet-cli.XXXXXX")
trap 'rm -rf "$W"' EXIT

# A script file with a Lua syntax error.
printf 'description = "broken"\ncategories = {"safe"}\nportrule = function(host, port\n  return true\nend\naction = function() return "x" end\n' \
  > "$W/bad_syntax.nse"

# Fixed part of every command: a scan of one closed loopback port, so a scanner that wrongly
# accepted the input stays on 127.0.0.1 and finishes quickly.
BASE=(-sT -Pn -n -p 1)

# name | tokens (alternatives separated by '|', any may appear) | arguments...
CASES=(
  "unknown-flag|--no-such-flag|--no-such-flag ${BASE[*]} 127.0.0.1"
  "port-out-of-range|70000|-sT -Pn -n -p 70000 127.0.0.1"
  "port-bad-range|1-x|-sT -Pn -n -p 1-x 127.0.0.1"
  "bad-cidr|127.0.0.0/33|${BASE[*]} 127.0.0.0/33"
  "unknown-script|nosuchscript|${BASE[*]} --script nosuchscript 127.0.0.1"
  "unknown-category|nosuchcategory|${BASE[*]} --script nosuchcategory 127.0.0.1"
  "unknown-in-expression|nosuchcategory|${BASE[*]} --script safe,nosuchcategory 127.0.0.1"
  "script-syntax-error|bad_syntax.nse|${BASE[*]} --script $W/bad_syntax.nse 127.0.0.1"
  "script-args-double-equals|x=a=b|${BASE[*]} --script banner --script-args x=a=b 127.0.0.1"
  "script-args-open-brace|k={|${BASE[*]} --script banner --script-args k={ 127.0.0.1"
)

if [ "${1:-}" = --list ]; then
  for c in "${CASES[@]}"; do echo "${c%%|*}"; done
  exit 0
fi

if ! command -v "${SCANNER[0]}" >/dev/null 2>&1; then
  echo "cli_bad_input: scanner not found: ${SCANNER[0]}"
  [ "${NSEFLEET_SKIP_MISSING:-0}" = 1 ] && exit 77
  exit 1
fi

run_case() {
  local spec=$1 name tokens rest
  name=${spec%%|*}; rest=${spec#*|}; tokens=${rest%%|*}; rest=${rest#*|}
  local -a args
  read -r -a args <<< "$rest"
  local d="$W/$name"; mkdir -p "$d"
  # Run in its own dir with cores enabled, so a crash leaves evidence we can detect.
  ( cd "$d" && ulimit -c unlimited 2>/dev/null; exec timeout -k 5 20 "${SCANNER[@]}" "${args[@]}" ) \
    >"$d/out" 2>"$d/err" </dev/null
  local rc=$? why=""
  if [ $rc -eq 0 ]; then why="exit status 0 (input accepted)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="hung (killed by timeout after 20s)"
  elif [ $rc -gt 128 ] && [ $rc -le 192 ]; then why="killed by signal $((rc - 128))"
  fi
  if compgen -G "$d/core*" >/dev/null; then why="${why:+$why; }core dump left behind"; fi
  if [ -z "$why" ]; then
    local found="" t
    IFS='|' read -r -a alts <<< "$tokens"
    for t in "${alts[@]}"; do grep -qF -- "$t" "$d/err" && { found=$t; break; }; done
    local nlines
    nlines=$(grep -c . "$d/err")
    if [ -z "$found" ]; then
      why="stderr does not name '$tokens'"
      grep -qF -- "${alts[0]}" "$d/out" && why="$why (it is on stdout instead)"
    elif [ "$nlines" -gt "$MAX_LINES" ]; then
      why="message is $nlines lines (at most $MAX_LINES expected)"
    fi
  fi
  if [ -n "$why" ]; then
    echo "FAIL $name: $why; exit $rc; command: ${SCANNER[*]} ${args[*]}"
    head -5 "$d/err" | sed 's/^/    stderr: /'
    return 1
  fi
  echo "ok   $name: exit $rc: $(grep -m1 -F -- "$found" "$d/err")"
  return 0
}

selected=("$@")
failed=0 ran=0
for c in "${CASES[@]}"; do
  name=${c%%|*}
  if [ ${#selected[@]} -gt 0 ]; then
    want=0; for s in "${selected[@]}"; do [ "$s" = "$name" ] && want=1; done
    [ $want = 1 ] || continue
  fi
  ran=$((ran + 1))
  run_case "$c" || failed=$((failed + 1))
done
if [ $ran -eq 0 ]; then echo "cli_bad_input: no case matches: $*"; exit 1; fi
echo "cli_bad_input: $((ran - failed))/$ran passed"
[ $failed -eq 0 ]
