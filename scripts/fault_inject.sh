#!/usr/bin/env bash
# Fault injection: tunes a small matmul with isolated measurement while every second
# candidate misbehaves in the worker (segfault, abort, illegal instruction, out-of-bounds
# store by the kernel, endless run, endless compile, wrong outputs; in turn), and checks that
# the tuner finishes, classifies every fault as expected and reports a valid best.
# Usage: scripts/fault_inject.sh [N=1000] [BUILD_DIR=build]   (N faulty candidates, N valid ones)
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n=${1:-1000}
build=$(realpath "${2:-$root/build}")
. "$root/scripts/lib/private_ktune.sh"

start=$(date +%s%N)
"$ktune" matmul --M=32 --N=32 --K=32 --budget=$((2 * n)) --strategy=random --threads=2 --seed=1 --log="$tmp/faults.jsonl" \
  --inject-faults=all:every=2 --run-timeout=0.5 --compile-timeout=4 --json >"$tmp/summary.json" 2>"$tmp/err.txt"
rc=$?
end=$(date +%s%N)
echo "fault_inject: ktune exit code $rc (0 = finished with a valid best) in $(((end - start) / 1000000000)) s"
if [ "$rc" -ne 0 ]; then
  echo "fault_inject: FAIL: the tune did not finish cleanly"; tail -5 "$tmp/err.txt"; exit 1
fi
grep -E '"(trials|valid|errors)"' "$tmp/summary.json" | tr -d ' ,' | tr '\n' ' '; echo
"$check" "$tmp/faults.jsonl" --faults
ok=$?
injected=$("$check" "$tmp/faults.jsonl" --faults | sed -n 's/^injected \([0-9]*\):.*/\1/p')
if [ "$ok" -eq 0 ] && [ "$injected" = "$n" ]; then
  echo "fault_inject: PASS: $n faults injected, 0 tuner crashes, every fault classified, best is valid"
else
  echo "fault_inject: FAIL (injected ${injected:-?} of $n)"; exit 1
fi
