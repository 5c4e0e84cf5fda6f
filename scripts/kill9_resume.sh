#!/usr/bin/env bash
# kill -9 durability: N times, runs (or resumes) a tune, kills it with SIGKILL at a random
# moment, and checks the log with ktune's reader: it parses (at most one record cut short per
# kill, skipped), the trials of the workload run 1..n with no candidate measured twice, and a
# kill loses at most the candidate in flight. Every fifth kill also tears the last record, as a
# kill inside its write() would. Finally resumes to the budget.
# Usage: scripts/kill9_resume.sh [N=50] [BUILD_DIR=build]
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n=${1:-50}
build=$(realpath "${2:-$root/build}")
. "$root/scripts/lib/private_ktune.sh"
log="$tmp/k9.jsonl"
args=(matmul --M=32 --N=32 --K=32 --threads=2 --seed=1 --log="$log" --strategy=random)
RANDOM=${KILL9_SEED:-1}

valid=0 prev_records=0 prev_skipped=0
for ((i = 1; i <= n; i++)); do
  resume=()
  [ -e "$log" ] && resume=(--resume)
  "$ktune" "${args[@]}" --budget=100000 "${resume[@]}" >"$tmp/out.txt" 2>"$tmp/err.txt" &
  pid=$!
  # A random moment in the first 2.5 s: during start-up, compiling, running, or writing.
  ms=$((200 + RANDOM % 2300))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  kill -9 "$pid" 2>/dev/null
  { wait "$pid"; } 2>/dev/null
  rc=$?
  if [ "$rc" -ne 137 ]; then
    echo "kill $i: ktune exited with $rc before the kill"; cat "$tmp/err.txt"
  fi
  if [ ! -e "$log" ]; then
    echo "kill $i: killed before the log was created"; valid=$((valid + 1)); continue
  fi
  # A kill inside write() is rare (a record is one short write), so every fifth kill also tears
  # the last record as such a kill would: the reader must skip it and --resume go on from there.
  torn=0
  if [ $((i % 5)) -eq 0 ] && [ -s "$log" ]; then
    truncate -s -$((2 + RANDOM % 300)) "$log" && torn=1
  fi
  out=$("$check" "$log")
  crc=$?
  records=$(echo "$out" | sed -n 's/^records \([0-9]*\) .*/\1/p')
  skipped=$(echo "$out" | sed -n 's/^records [0-9]* skipped \([0-9]*\) .*/\1/p')
  if [ "$crc" -eq 0 ] && [ "$records" -ge $((prev_records - torn)) ] && [ "$skipped" -le $((prev_skipped + 1)) ] &&
     [ "$rc" -eq 137 ]; then
    valid=$((valid + 1))
    echo "kill $i: ok: $out (+$((records - prev_records)) records$([ $torn -eq 1 ] && echo ', last record torn'))" | head -1
  else
    echo "kill $i: INVALID: $out"
  fi
  prev_records=${records:-0} prev_skipped=${skipped:-0}
done

# Finish: resume up to a few more candidates than measured; nothing is measured twice.
budget=$((prev_records + 3))
"$ktune" "${args[@]}" --budget=$budget --resume --json >"$tmp/final.json" 2>"$tmp/err.txt"
frc=$?
final=$("$check" "$log")
if [ "$frc" -ne 0 ] || ! echo "$final" | grep -q "records $budget .*trials-contiguous yes unique yes"; then
  echo "final resume: FAIL (exit $frc): $final"; cat "$tmp/err.txt"; valid=$((valid - 1))
else
  echo "final resume: ok: $final"
fi
echo "$valid/$n valid"
[ "$valid" -eq "$n" ]
