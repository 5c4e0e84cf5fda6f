#!/usr/bin/env bash
# Command-line tests of the real binary: exit codes, one-line messages, and that an existing
# log is never truncated. Usage: tests/cli_test.sh path/to/ktune
set -u
KTUNE=$(realpath "${1:?usage: cli_test.sh path/to/ktune}")
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

printf 'existing line\n' > keep.jsonl
expect 2 "unknown kernel or command 'nosuch'" -- "$KTUNE" nosuch
expect 2 "--Q" -- "$KTUNE" matmul --Q=3 --log=keep.jsonl
expect 2 "--M" -- "$KTUNE" matmul --M=abc --log=keep.jsonl
expect 2 "--M" -- "$KTUNE" matmul --M --log=keep.jsonl
expect 2 "must be positive" -- "$KTUNE" matmul --M=0 --log=keep.jsonl
expect 2 "must be positive" -- "$KTUNE" matmul --K=-4 --log=keep.jsonl
expect 2 "unknown target 'tpu9'" -- "$KTUNE" matmul --target=tpu9 --log=keep.jsonl
expect 2 "the requirement 'C % cb == 0 && K % kb == 0' does not hold with C=20" -- "$KTUNE" conv2d_nchwc --C=20 --log=keep.jsonl
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
[ "$(cat bad.jsonl)" = "$(printf 'garbage\nexisting line')" ] || { fail "a refused --resume modified a log"; }

if [ "$(cat keep.jsonl)" != "existing line" ]; then
  fail "an existing log was modified by a failing command"
fi


# A user's kernel directory adds a kernel that tunes.
mkdir -p mine
printf '# Scale a vector.\nkernel scale(N=64)\n  input X[N]\n  output Y[i] = X[i] * 3\n' > mine/scale.kt
"$KTUNE" --kernels mine scale --N=100 --budget=3 --strategy=random --log=scale.jsonl --json > scale.json 2>err.txt
if [ $? -ne 0 ] || ! grep -q '"kernel": "scale"' scale.json || [ "$(searched scale.jsonl)" -ne 3 ]; then
  fail "user kernel directory"; cat err.txt
else
  ok "--kernels mine scale"
fi

# Logs are appended, never truncated.
"$KTUNE" --kernels mine scale --budget=2 --strategy=random --log=scale.jsonl >/dev/null 2>&1
if [ "$(searched scale.jsonl)" -ne 5 ]; then
  fail "log not appended"
else
  ok "log appended"
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
cmp -s r.jsonl r0.jsonl || { fail "a refused --resume modified the log"; }
"$KTUNE" "${mm[@]}" --budget=4 --threads=2 --resume --log=r.jsonl > r.txt 2>&1
if [ $? -ne 0 ] || [ "$(searched r.jsonl)" -ne 4 ] || ! grep -q "2 from the log" r.txt; then
  fail "--resume"; cat r.txt
else
  ok "--resume continues a log"
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
pick=$("$KTUNE" best tp.jsonl --json | grep -o '"phase": "[a-z]*"' | head -1)
if [ $? -ne 0 ] || [ "$phases" != '"phase":"explore""phase":"refine""phase":"final"' ] || ! grep -q "warm start: the cost model learnt from 4 records" tp.txt ||
   ! grep -q "^refinement: " tp.txt || [ "$pick" != '"phase": "final"' ] || ! grep -q "^sustained: .* timed against each other" tp.txt; then
  fail "two-phase run ($phases; best $pick)"; cat tp.txt
else
  ok "two-phase run with warm start: explore, refine, then the final ranking, whose pick is the log's best"
fi
[ "$(cat keep.jsonl)" = "existing line" ] || { fail "a failing command modified keep.jsonl"; }

# --anchor: once a group of candidates has a valid one, the next groups are timed against the
# best so far and say so in the log.
"$KTUNE" matmul --M=16 --N=32 --K=16 --budget=40 --refine-budget=0 --anchor --log=an.jsonl > an.txt 2>&1
if [ $? -ne 0 ] || ! grep -q '"anchor":{"ms":[0-9.e-]*,"raw_ms":[0-9.e-]*,"trial":[1-9]' an.jsonl; then
  fail "--anchor"; cat an.txt
else
  ok "--anchor: records timed against the best so far name it"
fi

# model-eval: both splits hold out every record they do not train on.
for split in first random; do
  if "$KTUNE" model-eval tp.jsonl --train=6 --split=$split --json > me.json 2> me.err &&
     python3 - "$split" <<'EOF'
import json, sys
d = json.load(open("me.json"))
# the search's valid records (model-eval leaves the final ranking's re-measurements out)
valid = sum(1 for l in open("tp.jsonl")
            if json.loads(l)["result"]["error"] is None and json.loads(l)["phase"] != "final")
w = d["workloads"][0]
assert d["split"] == sys.argv[1] and w["train"] == 6, d
# random: every valid record outside the 6 drawn; first: the valid ones after the first 6
assert 0 < w["held_out"] <= valid and w["held_out"] >= valid - 6, (w, valid)
assert 0 <= w["accuracy"] <= 1, w
# one log: with all its trials in the first batch of 64, every held-out pair is a same-batch pair
if max(json.loads(l)["trial"] for l in open("tp.jsonl")) <= 64:
    assert w["accuracy_same_batch"] == w["accuracy"], w
EOF
  then ok "model-eval --split=$split"; else fail "model-eval --split=$split"; cat me.err; fi
done
expect 2 "--split: foo not in {first,random}" -- "$KTUNE" model-eval tp.jsonl --split=foo
expect 2 "--train must be positive" -- "$KTUNE" model-eval tp.jsonl --train=0

"$KTUNE" kernels > kernels.txt 2>&1 && grep -q '^matmul(M=' kernels.txt || { fail "ktune kernels"; }
"$KTUNE" targets > targets.txt 2>&1 && grep -q 'detected host' targets.txt || { fail "ktune targets"; }

finish
