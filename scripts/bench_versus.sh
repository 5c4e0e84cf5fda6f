#!/usr/bin/env bash
# ktune's tuned kernels against oneDNN, side by side in one process: the fairest speed
# comparison this machine allows. bench_cpu.sh times the baselines and ktune's kernels in
# separate processes, seconds to minutes apart, and this shared machine's speed drifts by
# tens of percent over such spans (its memory system is shared with other tenants); here
# each schedule is exported (`ktune replay SCHEDULE --emit obj`), linked into a shared
# library on OpenMP threads, and loaded by the baselines program (scripts/bench/baselines.cpp,
# --versus), which times ktune's kernel and oneDNN's primitives (matmul: plain and pre-packed
# B; conv2d: format `any`) in alternating rounds of short adjacent slices (>= 5 ms of calls
# each), ABBA, and reports per schedule the median over the rounds of (fastest oneDNN time /
# ktune time), with the quartiles of the rounds' ratios: above 1, ktune is faster; and per
# group the geometric mean over workloads of the best schedule's ratio (ktune may pick the
# best of its kernels, e.g. conv2d layouts).
# OpenBLAS is left out: its own thread pool and OpenMP's fight over the cores in one process
# (bench_cpu.sh measures it alone).
#
# Usage: scripts/bench_versus.sh [--schedules DIR] [--log LOG]... [--threads T] [--rounds R]
#                                [--only ID,ID] [--out DIR]
#   --schedules DIR   schedule files DIR/*.json ({"kernel","params","steps"}); each one that
#                     computes a workload of the CPU benchmark is compared, the others skipped
#   --log LOG         a tuning log (e.g. bench_cpu.sh's ktune-*.jsonl; may repeat): the best
#                     valid record of each workload and target across the logs (`ktune best`)
#   --threads T       threads for both sides (default: nproc)
#   --rounds R        rounds per workload (default 200); a round of matmul 512^3 lasts ~20 ms
#   --only ID,ID      only these workloads
#   --out DIR         results (default build/bench/versus-DATE): versus.jsonl (one line per
#                     workload, all rounds' times), versus.txt (the table), exported kernels
# Environment: KTUNE (default build/ktune), BENCH_DIR (where the baselines program is built,
# default build/bench), CC (default cc), CXX (default g++).
set -euo pipefail

main() {
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ktune="${KTUNE:-$root/build/ktune}"
schedules=""
logs=()
threads="$(nproc)"
rounds=200
only=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --schedules) schedules="$2"; shift 2 ;;
    --log) logs+=("$2"); shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_versus.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$schedules" ] || [ ${#logs[@]} -gt 0 ] || { echo "bench_versus.sh: give --schedules DIR or --log LOG" >&2; exit 2; }
[ -z "$schedules" ] || [ -d "$schedules" ] || { echo "bench_versus.sh: no directory '$schedules'" >&2; exit 2; }
for l in "${logs[@]}"; do [ -f "$l" ] || { echo "bench_versus.sh: no log '$l'" >&2; exit 2; }; done
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "bench_versus.sh: --threads must be a positive integer" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench_versus.sh: --rounds must be a positive integer" >&2; exit 2; }
[ -x "$ktune" ] || { echo "bench_versus.sh: no ktune at $ktune (build it, or set KTUNE)" >&2; exit 2; }
bench_dir="${BENCH_DIR:-$root/build/bench}"
out="${out:-$bench_dir/versus-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "bench_versus.sh: --out $out is not empty" >&2; exit 2; }

name=bench_versus.sh
. "$root/scripts/lib/baselines.sh"

list_args=()
[ -n "$only" ] && list_args+=(--only "$only")
"$baselines" --list "${list_args[@]}" > "$out/workloads.tsv"
# Every schedule to compare, in $out/schedules: the given files, and each log's best records.
mkdir -p "$out/schedules"
[ -z "$schedules" ] || cp "$schedules"/*.json "$out/schedules/" 2>/dev/null || true
if [ ${#logs[@]} -gt 0 ]; then
  # `ktune best` picks the best valid record of each workload and target (and reports a
  # corrupt log as ktune does everywhere: file:line, exit 2).
  "$ktune" best "${logs[@]}" --json > "$out/best.json" || exit 2
  python3 - "$out/schedules" "$out/best.json" <<'EOF'
import json, sys
for b in json.load(open(sys.argv[2])):
    r = b["record"]
    with open(f"{sys.argv[1]}/{b['kernel']}-{b['dag_hash']}-{b['target']}.json", "w") as f:
        json.dump({"kernel": r["workload"]["kernel"], "params": r["workload"]["params"], "steps": r["steps"]}, f)
EOF
fi
ls "$out/schedules"/*.json > /dev/null 2>&1 || { echo "bench_versus.sh: no schedule to compare" >&2; exit 2; }
python3 "$root/scripts/bench/report_cpu.py" --workloads "$out/workloads.tsv" \
  --match-schedules "$out/schedules"/*.json > "$out/schedules.tsv"

export OMP_NUM_THREADS="$threads"
failures=0
# Export every schedule; then one baselines process per workload times all of its kernels and
# oneDNN in the same rounds (ktune's kernels of a workload are compared with each other too).
ids=()
declare -A kernel_args names
while IFS=$'\t' read -r id f; do
  if [ "$id" = - ]; then
    echo "bench_versus.sh: $(basename "$f") computes none of the selected workloads; skipped" >&2
    continue
  fi
  name=$(basename "$f" .json)
  d="$out/kernels/$name"
  mkdir -p "$d"
  if ! "$ktune" replay "$f" --emit obj --out "$d" > "$d/export.log" 2>&1; then
    echo "bench_versus.sh: $id: ktune replay --emit obj failed (see $d/export.log)" >&2
    failures=$((failures + 1)); continue
  fi
  "${CC:-cc}" -O2 -fopenmp -fPIC -shared -o "$d/kernel.so" "$d"/*.o "$d/ktune_parallel_for.c"
  header=$(ls "$d"/*.h | head -1)
  [ -n "${names[$id]+x}" ] || ids+=("$id")
  kernel_args[$id]+="$d/kernel.so"$'\n'"$header"$'\n'
  names[$id]+="$name"$'\n'
done < "$out/schedules.tsv"

for id in "${ids[@]}"; do
  mapfile -t ka < <(printf '%s' "${kernel_args[$id]}")
  mapfile -t nm < <(printf '%s' "${names[$id]}")
  versus_args=()
  for ((i = 0; i < ${#ka[@]}; i += 2)); do versus_args+=(--versus "${ka[i]}" "${ka[i+1]}"); done
  echo "bench_versus.sh: $id (${nm[*]}), $rounds rounds, $threads thread(s)" >&2
  if ! res=$("$baselines" --lib onednn --only "$id" --threads "$threads" --rounds "$rounds" \
      "${versus_args[@]}" 2>> "$out/rounds.txt"); then
    echo "bench_versus.sh: $id: comparison failed (see $out/rounds.txt)" >&2
    failures=$((failures + 1))
  fi
  [ -z "$res" ] || python3 -c 'import json, sys
for line, name in zip(sys.argv[1].splitlines(), sys.argv[2:]):
    r = json.loads(line); r["schedule"] = name; print(json.dumps(r))' "$res" "${nm[@]}" >> "$out/versus.jsonl"
  grep "$id .* / best baseline" "$out/rounds.txt" | tail -n $(( ${#nm[@]} )) >&2 || true
done

[ -s "$out/versus.jsonl" ] || { echo "bench_versus.sh: nothing compared" >&2; exit 1; }
python3 - "$out/versus.jsonl" <<'EOF' | tee "$out/versus.txt"
import json, math, sys
from statistics import median as med
rows = [json.loads(l) for l in open(sys.argv[1])]
def quantile(v, q):
    v = sorted(v)
    x = q * (len(v) - 1)
    lo = math.floor(x)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (x - lo)
print(f"{'workload':30} {'schedule':24} {'rounds':>6} {'ktune ms':>9} {'oneDNN ms':>9} {'median ratio':>12}  ratio quartiles")
groups = {}
for r in rows:
    t = r["times_ms"]
    kt = med(t["ktune exported"])
    base = min(med(v) for k, v in t.items() if k != "ktune exported")
    print(f"{r['workload']:30} {r['schedule'][:24]:24} {r['rounds']:>6} {kt:9.4f} {base:9.4f} {r['ratio_median']:12.3f}  "
          + f"{quantile(r['ratios'], 0.25):.3f}-{quantile(r['ratios'], 0.75):.3f}" + ("" if r["ok"] else "  WRONG ANSWER"))
    g = groups.setdefault(r["group"], {})
    g[r["workload"]] = max(g.get(r["workload"], 0), r["ratio_median"])
for g, best in groups.items():
    v = list(best.values())
    print(f"geomean {g}: {math.exp(sum(map(math.log, v)) / len(v)):.3f} over {len(v)} workload(s) "
          "(ktune / fastest oneDNN, median of side-by-side rounds; the best schedule of each workload)")
EOF
[ "$failures" = 0 ] || { echo "bench_versus.sh: $failures workload(s) failed" >&2; exit 1; }
}
main "$@"
