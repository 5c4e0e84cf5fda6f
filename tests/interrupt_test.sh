#!/usr/bin/env bash
# Ctrl-C during a tune (DESIGN §9): SIGINT sent to the tune's process group, as a terminal
# does, stops it after the candidate in flight (the isolated worker, in its own process
# group, finishes that candidate), prints an "interrupted" summary, exits with 130 and leaves
# a log that --resume continues; a second SIGINT exits at once even while a candidate hangs,
# and takes the worker with it. Usage: tests/interrupt_test.sh BUILD_DIR
set -u
build=$(realpath "${1:?usage: interrupt_test.sh BUILD_DIR}")
ktune="$build/ktune"
check="$build/tests/ktune_log_check"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
args=(matmul --M=48 --N=48 --K=48 --threads=2 --seed=2 --strategy=random)

# 1. One Ctrl-C: the summary, exit 130, a resumable log.
setsid "$ktune" "${args[@]}" --log=i.jsonl --budget=400 >out.txt 2>err.txt &
pid=$!
for _ in $(seq 100); do [ -s i.jsonl ] && break; sleep 0.1; done
sleep 0.5
kill -INT -- "-$pid"
wait "$pid"
rc=$?
n=$(grep -c . i.jsonl)
[ "$rc" -eq 130 ] || fail "exit code $rc after Ctrl-C (want 130)"
grep -q "interrupted after $n of 400 trials" out.txt || { fail "no 'interrupted' summary for $n trials"; cat out.txt err.txt; }
"$check" i.jsonl | grep -q "records $n skipped 0 trials-contiguous yes unique yes" || fail "log after Ctrl-C: $("$check" i.jsonl)"
"$ktune" "${args[@]}" --log=i.jsonl --budget=$((n + 3)) --resume >out2.txt 2>err2.txt
rc=$?
[ "$rc" -eq 0 ] || fail "resume after Ctrl-C: exit $rc"
grep -q "$n from the log" out2.txt || fail "resume did not take over $n trials: $(head -3 out2.txt)"
"$check" i.jsonl | grep -q "records $((n + 3)) skipped 0 trials-contiguous yes unique yes" || fail "log after resume: $("$check" i.jsonl)"
[ "$fails" -eq 0 ] && echo "ok:   Ctrl-C after $n trials, exit 130, resumed to $((n + 3))"

# 2. Two Ctrl-C while the candidate in flight hangs: exit at once, worker gone. A hanging
# run is cut after max(1 s, 50 x the reference's time) and the worker restarted; at 512^3
# the naive reference takes 0.1-0.3 s, so the hang lasts seconds, long enough to be caught.
hang_args=(matmul --M=512 --N=512 --K=512 --threads=2 --seed=2 --strategy=random)
setsid "$ktune" "${hang_args[@]}" --budget=5 --log=h.jsonl --inject-faults=hang --run-timeout=300 >out3.txt 2>err3.txt &
pid=$!
worker=""
for _ in $(seq 100); do
  worker=$(pgrep -P "$pid" ktune-worker)
  [ -n "$worker" ] && break
  sleep 0.1
done
# The injected hang spins: wait (up to 30 s: a loaded machine can take long to reach the
# first run) until the worker has used the CPU for two half-second windows in a row (longer
# than the reference's runs), so that the Ctrl-C finds the hanging candidate in flight.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
busy=0
for _ in $(seq 60); do
  [ -n "$worker" ] || break
  t0=$(cpu_ticks "$worker"); sleep 0.5; t1=$(cpu_ticks "$worker")
  if [ $((t1 - t0)) -ge $((hz * 4 / 10)) ]; then busy=$((busy + 1)); else busy=0; fi
  [ "$busy" -ge 2 ] && break
done
[ "$busy" -ge 2 ] || fail "the injected hang never kept the worker busy"
kill -INT -- "-$pid"
sleep 0.3
kill -0 "$pid" 2>/dev/null || fail "the first Ctrl-C ended the tune while a candidate was in flight"
kill -INT -- "-$pid"
start=$(date +%s%N)
wait "$pid"
rc=$?
waited=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 130 ] || fail "exit code $rc after a second Ctrl-C (want 130)"
[ "$waited" -lt 2000 ] || fail "the second Ctrl-C took $waited ms"
sleep 0.3
[ -n "$worker" ] || fail "no worker process seen"
# (A dead worker may stay a zombie until its new parent reaps it: that is not alive.)
if [ -n "$worker" ] && [ -e "/proc/$worker" ] && ! grep -q '^State:.*Z' "/proc/$worker/status" 2>/dev/null; then
  fail "the worker $worker outlived the tuner"; kill -9 "$worker"
fi
grep -q "interrupted again" err3.txt || fail "no message for the second Ctrl-C"
[ "$fails" -eq 0 ] && echo "ok:   second Ctrl-C exits at once ($waited ms) and the worker goes with the tuner"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
