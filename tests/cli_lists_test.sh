#!/usr/bin/env bash
# Command-line tests of shape lists and log tools: `ktune tune LIST`, `merge`, `best`,
# `report`, `replay` (measure and --emit). Exit codes, one-line messages, logs never
# modified by a failing command, and exported code that compiles and links.
# Usage: tests/cli_lists_test.sh path/to/ktune path/to/source/tree
set -u
KTUNE=$(realpath "${1:?usage: cli_lists_test.sh path/to/ktune path/to/source}")
SRC=$(realpath "${2:?usage: cli_lists_test.sh path/to/ktune path/to/source}")
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

cat > small.json <<'EOF'
{"name": "small", "workloads": [
  {"kernel": "matmul", "params": {"M": 16, "N": 16, "K": 16}, "weight": 4},
  {"kernel": "conv2d", "params": {"N": 1, "C": 2, "H": 6, "W": 6, "K": 4, "R": 3, "S": 3, "stride": 1, "pad": 1, "dilation": 1}, "weight": 2},
  {"kernel": "dense", "params": {"M": 2, "N": 8, "K": 8}}
]}
EOF

# ---- bad input: one line, exit 2, the log untouched ---------------------------------------
printf 'existing line\n' > keep.jsonl
printf '{"workloads": [\n  {"kernel": "matmul",, }]}' > badjson.json
printf '{"workloads": []}' > empty.json
printf '{"workloads": [{"kernel": "conv3d", "params": {}}]}' > unknown.json
printf '{"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4}}]}' > missing.json
printf '{"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4, "Z": 1}}]}' > unkparam.json
printf '{"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4}}, {"kernel": "matmul", "params": {"K": 4, "M": 4, "N": 4}}]}' > dup.json
expect 2 "badjson.json:2:23: invalid JSON" -- "$KTUNE" tune badjson.json --log=keep.jsonl
expect 2 "the list has no workloads" -- "$KTUNE" tune empty.json --log=keep.jsonl
expect 2 "unknown kernel 'conv3d'" -- "$KTUNE" tune unknown.json --log=keep.jsonl
expect 2 "missing parameter K" -- "$KTUNE" tune missing.json --log=keep.jsonl
expect 2 "unknown parameter 'Z'" -- "$KTUNE" tune unkparam.json --log=keep.jsonl
expect 2 "workloads[1] duplicates workloads[0]" -- "$KTUNE" tune dup.json --log=keep.jsonl
expect 2 "cannot read the shape list" -- "$KTUNE" tune nosuch.json --log=keep.jsonl
expect 2 "--shard=3/3: the shard index must be between 0 and 2" -- "$KTUNE" tune small.json --shard=3/3 --log=keep.jsonl
expect 2 "--shard must be INDEX/COUNT" -- "$KTUNE" tune small.json --shard=x --log=keep.jsonl
expect 2 "the shard count must be at least 1" -- "$KTUNE" tune small.json --shard=0/0 --log=keep.jsonl
expect 2 "--budget must be positive" -- "$KTUNE" tune small.json --budget=0 --log=keep.jsonl
expect 2 "--remeasure must be between 0 and 100" -- "$KTUNE" tune small.json --remeasure=-1 --log=keep.jsonl
expect 2 "GPU target" -- "$KTUNE" tune small.json --target=a100 --log=keep.jsonl
expect 2 "unknown strategy 'nope'" -- "$KTUNE" tune small.json --strategy=nope --log=keep.jsonl
[ "$(cat keep.jsonl)" = "existing line" ] && ok "log untouched by failing list commands" || fail "a failing tune modified the log"

# ---- the shipped lists validate (dry run) --------------------------------------------------
for list in "$SRC"/configs/workloads/*.json; do
  if "$KTUNE" tune "$list" --dry-run > dry.txt 2> err.txt && grep -q "dry run" dry.txt; then
    ok "dry run $(basename "$list")"
  else
    fail "dry run of $list"; cat err.txt
  fi
done
# Shards cover the list exactly once.
for i in 0 1 2; do "$KTUNE" tune "$SRC/configs/workloads/resnet18.json" --dry-run --json --shard=$i/3 > shard$i.json; done
n=$(cat shard0.json shard1.json shard2.json | grep -c '"key"')
[ "$n" -eq 12 ] && ok "3 shards of resnet18 hold its 12 workloads" || fail "shards hold $n workloads, want 12"

# ---- tune a list ---------------------------------------------------------------------------
"$KTUNE" tune small.json --budget=12 --round-trials=2 --log=small.jsonl --seed=1 --json > tune.json 2> err.txt
rc=$?
if [ $rc -ne 0 ] || [ "$(searched small.jsonl)" -ne 12 ] || ! grep -q '"weighted_total_ms"' tune.json; then
  fail "tune small.json (exit $rc)"; cat err.txt
else
  ok "tune small.json: 12 trials logged"
fi
# The final ranking: each workload's best candidates re-timed together, logged after the search.
nf=$(finals small.jsonl)
if [ "$nf" -ge 3 ] && [ "$(grep -c '"sustained": {' tune.json)" -eq 3 ] &&
   [ "$(tail -n "$nf" small.jsonl | grep -vc '"phase":"final"')" -eq 0 ]; then
  ok "final ranking of every workload ($nf final records, after the search's)"
else
  fail "final ranking of the list ($nf final records)"; cat tune.json
fi
grep -c '"trials": 0' tune.json >/dev/null && fail "a workload got no trials" || ok "every workload tuned"
"$KTUNE" tune small.json --budget=6 --round-trials=2 --log=small.jsonl > text.txt 2> progress.txt
grep -q "weighted total" text.txt && grep -q "(warm-up)" progress.txt && grep -q "pick ms" text.txt &&
  grep -q "\[final ranking\]" progress.txt && ok "summary table and per-round progress" ||
  { fail "text output"; cat text.txt progress.txt; }
[ "$(searched small.jsonl)" -eq 18 ] && ok "log appended" || fail "log not appended"

# ---- resume, Ctrl-C ------------------------------------------------------------------------
"$KTUNE" tune small.json --budget=6 --round-trials=2 --log=res.jsonl --threads=1 > /dev/null 2>&1
"$KTUNE" tune small.json --budget=10 --round-trials=2 --log=res.jsonl --threads=1 --resume --json > res.json 2> err.txt
[ "$(searched res.jsonl)" -eq 10 ] && grep -q '"resumed": 6' res.json && ok "--resume continues to the budget" ||
  { fail "--resume"; cat err.txt; }
expect 2 "there is no tuning log 'none.jsonl' to resume" -- "$KTUNE" tune small.json --resume --log=none.jsonl
cp res.jsonl res_before.jsonl
expect 2 "pass --threads=1" -- "$KTUNE" tune small.json --resume --log=res.jsonl --threads=2 --budget=12
cmp -s res.jsonl res_before.jsonl && ok "a refused resume leaves the log as it was" || fail "a refused resume changed the log"
"$KTUNE" tune small.json --budget=400 --round-trials=2 --log=int.jsonl --threads=1 > int.txt 2> /dev/null &
pid=$!
for _ in $(seq 600); do [ -s int.jsonl ] && [ "$(wc -l < int.jsonl)" -ge 2 ] && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
n=$(wc -l < int.jsonl)
[ "$(finals int.jsonl)" -eq 0 ] || fail "an interrupted list ran its final ranking"
[ $rc -eq 130 ] && grep -q "interrupted after" int.txt && [ "$n" -lt 400 ] && ok "Ctrl-C: exit 130 after $n trials, summary printed" ||
  { fail "Ctrl-C (exit $rc)"; cat int.txt; }
# Enough trials for every workload to get its warm-up round (exit 1 means one got no valid result).
"$KTUNE" tune small.json --budget=$((n + 6)) --round-trials=2 --log=int.jsonl --threads=1 --resume > /dev/null 2> err.txt &&
  [ "$(searched int.jsonl)" -eq $((n + 6)) ] && ok "resumed after Ctrl-C" || { fail "resume after Ctrl-C"; cat err.txt; }

# ---- best / report -------------------------------------------------------------------------
"$KTUNE" best small.jsonl > best.txt 2> err.txt && [ "$(grep -c host best.txt)" -eq 3 ] && ok "best: 3 workloads" ||
  { fail "best"; cat best.txt err.txt; }
"$KTUNE" report small.jsonl -o report.html > /dev/null 2> err.txt && grep -q "<svg" report.html &&
  [ "$(grep -o '<section' report.html | wc -l)" -eq 3 ] && ok "report" || { fail "report"; cat err.txt; }
expect 2 "is not a ktune report" -- "$KTUNE" report small.jsonl -o keep.jsonl
expect 2 "is one of the input logs" -- "$KTUNE" report small.jsonl -o small.jsonl --force

# ---- merge ---------------------------------------------------------------------------------
head -n 5 small.jsonl > part1.jsonl
tail -n +3 small.jsonl > part2.jsonl
cp small.jsonl before.jsonl
"$KTUNE" merge part1.jsonl part2.jsonl -o merged.jsonl > merge.txt 2> err.txt
[ $? -eq 0 ] && [ "$(wc -l < merged.jsonl)" -le "$(wc -l < small.jsonl)" ] && grep -q "duplicates dropped" merge.txt && ok "merge drops duplicates" ||
  { fail "merge"; cat merge.txt err.txt; }
expect 2 "exists; pass --force" -- "$KTUNE" merge part1.jsonl -o merged.jsonl
expect 2 "is one of the input logs" -- "$KTUNE" merge part1.jsonl part2.jsonl -o part2.jsonl --force
sed 's/"format_version":1/"format_version":2/' part1.jsonl > v2.jsonl
expect 2 "log format version 2" -- "$KTUNE" merge part1.jsonl v2.jsonl -o v.jsonl
[ ! -e v.jsonl ] && ok "refused merge wrote nothing" || fail "refused merge wrote v.jsonl"
cmp -s small.jsonl before.jsonl && ok "inputs unchanged" || fail "an input log changed"

# ---- replay --------------------------------------------------------------------------------
"$KTUNE" replay small.jsonl > replay.txt 2> err.txt && [ "$(grep -c verified replay.txt)" -eq 3 ] &&
  ok "replay verifies the best of each workload" || { fail "replay"; cat replay.txt err.txt; }
# A record tuned for a CPU feature this machine lacks is not measured here, but exported.
sed 's/"features":\[/"features":["nosuchfeature",/' small.jsonl > foreign.jsonl
expect 2 "tuned for a CPU with 'nosuchfeature', which this machine lacks" -- "$KTUNE" replay foreign.jsonl
"$KTUNE" replay foreign.jsonl --emit=c --out=out_foreign > /dev/null 2> err.txt && ls out_foreign/*.c > /dev/null &&
  ok "a foreign record exports" || { fail "export of a foreign record"; cat err.txt; }
sched() { printf '{"kernel": "matmul", "params": {"M": 8, "N": 8, "K": 8}, "steps": [%s]}' "$1" > "$2"; }
sched '{"kind": "split", "stage": 0, "iter": 1, "lengths": [4]}, {"kind": "annotate", "stage": 0, "iter": 2, "annotation": "vectorize"}' good.json
"$KTUNE" replay good.json > r.txt 2> err.txt && grep -q verified r.txt && ok "replay schedule file" || { fail "replay schedule"; cat err.txt; }
sched '{"kind": "splt", "stage": 0, "iter": 1, "lengths": [4]}' s1.json
sched '{"kind": "split", "stage": 4, "iter": 1, "lengths": [4]}' s2.json
sched '{"kind": "split", "stage": 0, "iter": 9, "lengths": [4]}' s3.json
sched '{"kind": "split", "stage": 0, "iter": 1, "lengths": [0]}' s4.json
sched '{"kind": "split", "stage": 0, "iter": 1, "lengths": [64]}' s5.json
printf '{"kernel": "matmul",\n "steps": [}' > s6.json
expect 2 "s1.json: step 0: unknown step kind 'splt'" -- "$KTUNE" replay s1.json
expect 2 "s2.json: step 0 (split)" -- "$KTUNE" replay s2.json
expect 2 "s3.json: step 0 (split)" -- "$KTUNE" replay s3.json
expect 2 "s4.json: step 0 (split)" -- "$KTUNE" replay s4.json
expect 2 "s5.json: step 0 (split)" -- "$KTUNE" replay s5.json
expect 2 "s6.json:2:12: invalid JSON" -- "$KTUNE" replay s6.json
expect 2 "--emit must be one of c, llvm, asm, obj" -- "$KTUNE" replay good.json --emit=wasm

# Exported C builds with the README's example; exported objects link with ktune_parallel_for.c.
example() { sed -n '/^```c/,/^```$/p' "$1/README.md" | sed '1d;$d' > "$1/main.c"; }
if "$KTUNE" replay small.jsonl --emit=c --out=out_c > /dev/null 2> err.txt && example out_c &&
   (cd out_c && gcc -std=c99 -O2 -Wall -Werror -c *_*.c && gcc -std=c99 -O2 main.c *_*.o -o main -lm && ./main); then
  ok "--emit=c: sources compile, README example links"
else
  fail "--emit=c"; cat err.txt
fi
if "$KTUNE" replay small.jsonl --emit=obj --out=out_o > /dev/null 2> err.txt && example out_o &&
   (cd out_o && gcc -std=c99 -O2 main.c *_*.o ktune_parallel_for.c -o main -pthread -lm && ./main); then
  ok "--emit=obj: objects link with ktune_parallel_for.c"
else
  fail "--emit=obj"; cat err.txt
fi
"$KTUNE" replay small.jsonl --emit=llvm --out=out_ll > /dev/null 2>&1 && ls out_ll/*.ll > /dev/null && ok "--emit=llvm" || fail "--emit=llvm"
"$KTUNE" replay good.json --emit=asm --out=out_s > /dev/null 2>&1 && (cd out_s && gcc -c *.s) && ok "--emit=asm assembles" ||
  fail "--emit=asm"

finish
