#!/usr/bin/env bash
# Command-line tests of the real binary: exit codes, one-line messages, and that an existing
# log is never truncated. Usage: tests/cli_test.sh path/to/ktune
set -u
KTUNE=$(realpath "${1:?usage: cli_test.sh path/to/ktune}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fails=0

# expect CODE PHRASE -- command...: runs the command, checks its exit code and that stderr
# contains PHRASE.
expect() {
  local code=$1 phrase=$2
  shift 3
  "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" -ne "$code" ] || ! grep -qF -- "$phrase" err.txt; then
    echo "FAIL: $* -> exit $got (want $code), stderr:"; sed 's/^/    /' err.txt
    fails=$((fails + 1))
  else
    echo "ok:   $*"
  fi
}

printf 'existing line\n' > keep.jsonl
expect 2 "unknown kernel or command 'nosuch'" -- "$KTUNE" nosuch
expect 2 "--Q" -- "$KTUNE" matmul --Q=3 --log=keep.jsonl
expect 2 "--M" -- "$KTUNE" matmul --M=abc --log=keep.jsonl
expect 2 "--M" -- "$KTUNE" matmul --M --log=keep.jsonl
expect 2 "must be positive" -- "$KTUNE" matmul --M=0 --log=keep.jsonl
expect 2 "must be positive" -- "$KTUNE" matmul --K=-4 --log=keep.jsonl
expect 2 "unknown target 'tpu9'" -- "$KTUNE" matmul --target=tpu9 --log=keep.jsonl
expect 2 "GPU target" -- "$KTUNE" matmul --target=a100 --log=keep.jsonl
expect 2 "--budget must be between 1 and 1000000 (got 0)" -- "$KTUNE" matmul --budget=0 --log=keep.jsonl
expect 2 "--budget must be between 1 and 1000000 (got -3)" -- "$KTUNE" matmul --budget=-3 --log=keep.jsonl
expect 2 "cannot write the tuning log" -- "$KTUNE" matmul --M=8 --N=8 --K=8 --budget=1 --log=/nonexistent/dir/x.jsonl
expect 2 "dilation" -- "$KTUNE" conv2d --H=2 --W=2 --pad=0 --log=keep.jsonl
mkdir -p bad
printf 'kernel broken(M=4)\n  input A[M]\n  output B[i] = A[i] +* 2\n' > bad/broken.kt
expect 2 "broken.kt:3:" -- "$KTUNE" --kernels bad kernels
expect 2 "does not support yet" -- "$KTUNE" matmul --dtype=f16 --log=keep.jsonl
expect 2 "a command is required" -- "$KTUNE"
expect 2 "is not a directory" -- "$KTUNE" --kernels nodir kernels

expect 2 "--compile-timeout must be positive" -- "$KTUNE" matmul --compile-timeout=0 --log=keep.jsonl
expect 2 "--run-timeout must be positive" -- "$KTUNE" matmul --run-timeout=-1 --log=keep.jsonl
expect 2 "unknown fault 'boom'" -- "$KTUNE" matmul --inject-faults=boom --log=keep.jsonl
expect 2 "needs isolated measurement" -- "$KTUNE" matmul --inject-faults=segv --no-isolate --log=keep.jsonl
expect 2 "no tuning log 'none.jsonl'" -- "$KTUNE" matmul --resume --log=none.jsonl
printf 'garbage\nexisting line\n' > bad.jsonl
expect 2 "bad.jsonl:1: not valid JSON" -- "$KTUNE" matmul --M=8 --N=8 --K=8 --budget=2 --resume --log=bad.jsonl
[ "$(cat bad.jsonl)" = "$(printf 'garbage\nexisting line')" ] || { echo "FAIL: a refused --resume modified a log"; fails=$((fails + 1)); }

if [ "$(cat keep.jsonl)" != "existing line" ]; then
  echo "FAIL: an existing log was modified by a failing command"; fails=$((fails + 1))
fi

# A user's kernel directory adds a kernel that tunes.
mkdir -p mine
printf '# Scale a vector.\nkernel scale(N=64)\n  input X[N]\n  output Y[i] = X[i] * 3\n' > mine/scale.kt
"$KTUNE" --kernels mine scale --N=100 --budget=3 --strategy=random --log=scale.jsonl --json > scale.json 2>err.txt
if [ $? -ne 0 ] || ! grep -q '"kernel": "scale"' scale.json || [ "$(wc -l < scale.jsonl)" -ne 3 ]; then
  echo "FAIL: user kernel directory"; cat err.txt; fails=$((fails + 1))
else
  echo "ok:   --kernels mine scale"
fi

# Logs are appended, never truncated.
"$KTUNE" --kernels mine scale --budget=2 --strategy=random --log=scale.jsonl >/dev/null 2>&1
if [ "$(wc -l < scale.jsonl)" -ne 5 ]; then
  echo "FAIL: log not appended"; fails=$((fails + 1))
else
  echo "ok:   log appended"
fi

# --resume against a log of another kernel definition or thread count: refused, log unchanged.
mm=(matmul --M=8 --N=8 --K=8 --strategy=random)
"$KTUNE" "${mm[@]}" --budget=2 --threads=2 --log=r.jsonl >/dev/null 2>&1
cp r.jsonl r0.jsonl
expect 2 "(pass --threads=2)" -- "$KTUNE" "${mm[@]}" --budget=4 --threads=1 --resume --log=r.jsonl
mkdir -p mine2
mmfile=$("$KTUNE" kernels | grep -A2 '^matmul(' | tail -1 | tr -d ' ')
sed 's/A\[i, k\] \* B\[k, j\]/A[i, k] * B[k, j] * 2/' "$mmfile" > mine2/matmul.kt
expect 2 "another definition of the kernel" -- "$KTUNE" --kernels mine2 "${mm[@]}" --budget=4 --threads=2 --resume --log=r.jsonl
cmp -s r.jsonl r0.jsonl || { echo "FAIL: a refused --resume modified the log"; fails=$((fails + 1)); }
"$KTUNE" "${mm[@]}" --budget=4 --threads=2 --resume --log=r.jsonl > r.txt 2>&1
if [ $? -ne 0 ] || [ "$(wc -l < r.jsonl)" -ne 4 ] || ! grep -q "2 from the log" r.txt; then
  echo "FAIL: --resume"; cat r.txt; fails=$((fails + 1))
else
  echo "ok:   --resume continues a log"
fi

# Strategies: bad values are one-line user errors; a two-phase run logs its phases in order.
expect 2 "unknown strategy 'annealing' (available: two-phase, evolutionary, droplet, random)" -- "$KTUNE" matmul --strategy=annealing --log=keep.jsonl
expect 2 "--refine-budget must be between 0 and" -- "$KTUNE" matmul --refine-budget=-1 --log=keep.jsonl
expect 2 "--time-budget must be a number of seconds" -- "$KTUNE" matmul --time-budget=-5 --log=keep.jsonl
expect 2 "--budget must be between 1 and" -- "$KTUNE" matmul --budget=2000000 --log=keep.jsonl
expect 2 "--warm-start: there is no tuning log 'nothere.jsonl'" -- "$KTUNE" matmul --M=8 --N=8 --K=8 --budget=2 --warm-start nothere.jsonl --log=keep.jsonl
expect 2 "holds no record of kernel softmax (only of matmul)" -- "$KTUNE" softmax --budget=2 --warm-start r.jsonl --log=keep.jsonl
printf 'garbage\n{"trial": \n' > corrupt.jsonl
expect 2 "not a tuning log: 2 unreadable lines" -- "$KTUNE" matmul --M=8 --N=8 --K=8 --budget=2 --warm-start corrupt.jsonl --log=keep.jsonl
expect 2 "only the two-phase and evolutionary strategies" -- "$KTUNE" matmul --M=8 --N=8 --K=8 --strategy=random --warm-start r.jsonl --log=keep.jsonl
"$KTUNE" matmul --M=16 --N=32 --K=16 --budget=10 --refine-budget=5 --warm-start r.jsonl --log=tp.jsonl > tp.txt 2>&1
phases=$(grep -o '"phase":"[a-z]*"' tp.jsonl | uniq | tr -d '\n')
if [ $? -ne 0 ] || [ "$phases" != '"phase":"explore""phase":"refine"' ] || ! grep -q "warm start: the cost model learnt from 4 records" tp.txt ||
   ! grep -q "^refinement: " tp.txt; then
  echo "FAIL: two-phase run ($phases)"; cat tp.txt; fails=$((fails + 1))
else
  echo "ok:   two-phase run with warm start: explore then refine"
fi
[ "$(cat keep.jsonl)" = "existing line" ] || { echo "FAIL: a failing command modified keep.jsonl"; fails=$((fails + 1)); }

"$KTUNE" kernels > kernels.txt 2>&1 && grep -q '^matmul(M=' kernels.txt || { echo "FAIL: ktune kernels"; fails=$((fails + 1)); }
"$KTUNE" targets > targets.txt 2>&1 && grep -q 'detected host' targets.txt || { echo "FAIL: ktune targets"; fails=$((fails + 1)); }

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
