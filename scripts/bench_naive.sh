#!/usr/bin/env bash
# Side-by-side benchmark of the first tuner against a naive triple loop (gcc -O3
# -march=native, one thread) in the same run: prints GFLOP/s of each and the ratio.
# Usage: scripts/bench_naive.sh [BUDGET] [SIZES...]     (default: 64, sizes 256 1024)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
budget=${1:-64}
shift || true
[ $# -gt 0 ] && sizes=("$@") || sizes=(256 1024)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O3 -march=native -o "$tmp/naive" "$root/scripts/bench/naive_matmul.c"
threads=$(nproc)
printf "%-18s %14s %16s %16s %9s\n" "matmul" "naive GFLOP/s" "ktune 1t GFLOP/s" "ktune ${threads}t GFLOP/s" "ratio ${threads}t"
for n in "${sizes[@]}"; do
  read -r _ naive < <("$tmp/naive" "$n" "$n" "$n")
  k1=$("$root/build/ktune" matmul --M="$n" --N="$n" --K="$n" --budget="$budget" --threads=1 --json \
        --log="$tmp/m$n-1.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["best"]["gflops"])')
  kt=$("$root/build/ktune" matmul --M="$n" --N="$n" --K="$n" --budget="$budget" --threads="$threads" --json \
        --log="$tmp/m$n-t.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["best"]["gflops"])')
  printf "%-18s %14.1f %16.1f %16.1f %8.1fx\n" "${n}x${n}x${n}" "$naive" "$k1" "$kt" "$(python3 -c "print($kt/$naive)")"
done
