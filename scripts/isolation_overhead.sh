#!/usr/bin/env bash
# Cost of isolated measurement: tunes the same candidates (same seed) with measurement in a
# worker process and in-process, alternating, ROUNDS times each, and prints the tuning rate of
# each run and the overhead of the medians.
# Usage: scripts/isolation_overhead.sh [ROUNDS=3] [BUDGET=64] [SIZE=128] [BUILD_DIR=build]
set -eu
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=${1:-3} budget=${2:-64} size=${3:-128}
build=$(realpath "${4:-$root/build}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
secs() { sed -n 's/.*"tuning_seconds": \([0-9.e+-]*\).*/\1/p' "$1"; }
iso=() inproc=()
for ((r = 1; r <= rounds; r++)); do
  for mode in isolated in-process; do
    flag=""
    [ "$mode" = in-process ] && flag=--no-isolate
    "$build/ktune" --debug=1 matmul --M="$size" --N="$size" --K="$size" --budget="$budget" --strategy=random --seed=7 --threads=2 $flag \
      --log="$tmp/$mode-$r.jsonl" --json >"$tmp/$mode-$r.json" 2>"$tmp/$mode-$r.err"
    s=$(secs "$tmp/$mode-$r.json")
    printf '%-11s round %d: %6.2f s, %5.2f candidates/s\n' "$mode" "$r" "$s" "$(echo "$budget / $s" | awk '{print $1/$3}')"
    # Where the isolated run's time went (round trips minus the worker's own time = messaging).
    grep -h "^isolated measurement:" "$tmp/$mode-$r.err" | sed 's/^/    /' || true
    if [ "$mode" = isolated ]; then iso+=("$s"); else inproc+=("$s"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mi=$(median "${iso[@]}") mp=$(median "${inproc[@]}")
awk -v i="$mi" -v p="$mp" -v b="$budget" 'BEGIN {
  printf "median: isolated %.2f s (%.2f cand/s), in-process %.2f s (%.2f cand/s): overhead %+.1f%%\n", i, b/i, p, b/p, (i/p-1)*100 }'
