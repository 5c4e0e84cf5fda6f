#!/usr/bin/env bash
# ktune against vendor libraries on the CPU, in one run: oneDNN (matmul, ResNet-18 conv2d
# layers, MobileNet-v2 depthwise layers) and OpenBLAS (sgemm), timed by
# scripts/bench/baselines.cpp with ktune's protocol, and ktune tuning the same workloads
# (plus, optionally, records from existing tuning logs and replayed hand-written schedules).
# A matmul is tuned with matmul (row-major B) and matmul_packed (B pre-packed into panels of
# 64 columns, as oneDNN's pre-packed B, packed outside the timed kernel); a conv2d layer is
# tuned with each ktune kernel that computes it: conv2d (NCHW),
# conv2d_nhwc and conv2d_nchwc (blocked NCHW16c), the layouts oneDNN picks among, and a
# depthwise layer with depthwise_conv2d (NCHW) and depthwise_conv2d_nchwc (NCHW16c) (layout
# conversions are outside the timed kernel, as oneDNN's reorders are; --ktune-kernels
# picks some). Prints, per thread count, a table of GFLOP/s (2 x MACs / time for ktune and
# the baselines alike) of each ktune kernel and each baseline, and the ratio of ktune's best
# to the best baseline, with the geometric mean of the ratio per group.
#
# Usage: scripts/bench_cpu.sh [--threads "1 2"] [--quick] [--budget N] [--groups G,G]
#                             [--only ID,ID] [--ktune-kernels K,K] [--ktune-log LOG]...
#                             [--ktune-schedules DIR] [--no-tune] [--repeat R]
#                             [--wait-idle S] [--out DIR]
#   --threads LIST         thread counts to measure (default: "1 N", N = nproc)
#   --quick                9 of the 27 workloads, ktune budget 8 (unless --budget/KTUNE_BUDGET)
#   --budget N             ktune candidates per tune (default: $KTUNE_BUDGET, else 32; 8 quick)
#   --groups G,G           only these groups: matmul, resnet18_conv, mobilenet_dw
#   --only ID,ID           only these workloads (ids as in the table)
#   --ktune-kernels K,K    tune only with these ktune kernels (e.g. conv2d_nchwc,
#                          depthwise_conv2d_nchwc)
#   --ktune-log LOG        also take ktune's best valid record per workload and thread count
#                          from this existing tuning log (may repeat)
#   --ktune-schedules DIR  replay every DIR/*.json schedule ({"kernel","params","steps"}) with
#                          `ktune replay`, when this ktune has that command: right after the
#                          baselines of the workload it computes, the others at the end
#   --no-tune              do not tune (ktune numbers only from --ktune-log / --ktune-schedules)
#   --repeat R             baselines and replayed schedules: best of R runs of the timing
#                          protocol (default 3)
#   --wait-idle S          before each measurement, wait up to S seconds (default 2; 0: do
#                          not wait) for the other processes to use < 0.25 cores; the load
#                          seen (always sampled) is kept in busy.tsv and summarised below
#                          the tables
#   --out DIR              keep the raw results here, a new or empty folder
#                          (default: build/bench/cpu-DATE)
#
# Duration on the 2-core development machine (shared, busy), measured when conv2d layers
# were tuned with conv2d only: --quick at "1 2" about 5 minutes; the full set at "1 2"
# with budget 32 about 55 minutes, almost all of it ktune tuning (the big matmuls' tunes
# take 3-8 minutes each: slow candidates run until their 10 s timeout); each further conv
# layout adds the conv2d tunes again; the baselines alone (--no-tune) about 1.5 minutes. Environment: KTUNE (ktune binary, default build/ktune),
# KTUNE_BUDGET, KTUNE_FLAGS (more ktune flags for the tunes, e.g. --strategy=random), CXX (default g++),
# BENCH_DIR (where the baselines program and the default --out go, default build/bench).
set -euo pipefail

# All in a function: bash reads it whole before running, so editing this file during a
# long run cannot derail the run.
main() {
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ktune="${KTUNE:-$root/build/ktune}"

threads="1 $(nproc)"
quick=0
budget="${KTUNE_BUDGET:-}"
groups=""
only=""
ktune_kernels=""
logs=()
schedules=""
tune=1
repeat=3
wait_idle=2
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --threads=*) threads="${1#*=}"; shift ;;
    --quick) quick=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    --budget=*) budget="${1#*=}"; shift ;;
    --groups) groups="$2"; shift 2 ;;
    --groups=*) groups="${1#*=}"; shift ;;
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --ktune-kernels) ktune_kernels="$2"; shift 2 ;;
    --ktune-kernels=*) ktune_kernels="${1#*=}"; shift ;;
    --ktune-log) logs+=("$2"); shift 2 ;;
    --ktune-log=*) logs+=("${1#*=}"); shift ;;
    --ktune-schedules) schedules="$2"; shift 2 ;;
    --ktune-schedules=*) schedules="${1#*=}"; shift ;;
    --no-tune) tune=0; shift ;;
    --wait-idle) wait_idle="$2"; shift 2 ;;
    --wait-idle=*) wait_idle="${1#*=}"; shift ;;
    --repeat) repeat="$2"; shift 2 ;;
    --repeat=*) repeat="${1#*=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_cpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$budget" ] || { [ "$quick" = 1 ] && budget=8 || budget=32; }
threads="$(echo "$threads" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
for t in $threads; do
  [[ "$t" =~ ^[1-9][0-9]*$ ]] || { echo "bench_cpu.sh: bad thread count '$t'" >&2; exit 2; }
done
[[ "$wait_idle" =~ ^[0-9]+$ ]] || { echo "bench_cpu.sh: --wait-idle takes whole seconds" >&2; exit 2; }
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "bench_cpu.sh: --repeat takes a positive count" >&2; exit 2; }
for l in "${logs[@]}"; do
  [ -r "$l" ] || { echo "bench_cpu.sh: cannot read ktune log '$l'" >&2; exit 2; }
done
[ -z "$schedules" ] || [ -d "$schedules" ] || { echo "bench_cpu.sh: no directory '$schedules'" >&2; exit 2; }

# --- dependencies (oneDNN and OpenBLAS from Debian) and the baselines program ------------
bench_dir="${BENCH_DIR:-$root/build/bench}"
name=bench_cpu.sh
. "$root/scripts/lib/baselines.sh"

if [ "$tune" = 1 ] || [ -n "$schedules" ]; then
  if [ ! -x "$ktune" ]; then
    echo "bench_cpu.sh: $ktune not found; building it" >&2
    cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
    ninja -C "$root/build" ktune >&2
  fi
fi
# OpenBLAS 0.3.21 does not know CPUs newer than its release (this machine's model 207, an
# Emerald Rapids, included) and falls back to its Prescott (SSE3) kernels, which would make
# a straw man of it: pick the AVX-512 (SkylakeX) or AVX2 (Haswell) kernels instead.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  core=$("$baselines" --openblas-core)
  if [ "$core" = Prescott ] || [ "$core" = Core2 ] || [ "$core" = Nehalem ]; then
    if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
    [ -n "${OPENBLAS_CORETYPE:-}" ] &&
      echo "bench_cpu.sh: OpenBLAS does not recognise this CPU (it picked $core kernels); using OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE" >&2
  fi
fi

# A misspelt --ktune-kernels name would tune nothing, silently.
for k in ${ktune_kernels//,/ }; do
  if ! "$baselines" --list | cut -f3 | grep -qxF "$k"; then
    echo "bench_cpu.sh: --ktune-kernels: no workload is computed by a ktune kernel '$k' (kernels: $("$baselines" --list | cut -f3 | sort -u | tr '\n' ' '))" >&2
    exit 2
  fi
done

replay=0
if [ -n "$schedules" ]; then
  if "$ktune" --help 2>&1 | grep -qE '^[[:space:]]+replay([[:space:]]|$)'; then
    replay=1
  else
    echo "bench_cpu.sh: this ktune has no 'replay' command; schedules in $schedules are not replayed" >&2
  fi
fi

[ -n "$out" ] || out="$bench_dir/cpu-$(date +%Y%m%d-%H%M%S)"
# ktune appends to logs: a used folder would mix runs.
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "bench_cpu.sh: '$out' is not empty; name a new folder with --out" >&2; exit 2
fi
mkdir -p "$out"
# Tune with a snapshot of ktune and its measurement worker (ktune runs the ktune-worker
# next to it): others may rebuild build/ during a long run.
if [ -x "$ktune" ]; then
  cp "$ktune" "$out/ktune"
  [ -x "$(dirname "$ktune")/ktune-worker" ] && cp "$(dirname "$ktune")/ktune-worker" "$out/ktune-worker"
  ktune="$out/ktune"
  trap 'rm -f "$out/ktune" "$out/ktune-worker"' EXIT
fi
list_args=()
[ "$quick" = 1 ] && list_args+=(--quick)
[ -n "$groups" ] && list_args+=(--groups "$groups")
[ -n "$only" ] && list_args+=(--only "$only")
"$baselines" --list "${list_args[@]}" > "$out/workloads.tsv"
[ -s "$out/workloads.tsv" ] || { echo "bench_cpu.sh: no workload selected" >&2; exit 2; }
: > "$out/baselines.jsonl"
: > "$out/ktune.jsonl"
: > "$out/errors.txt"
printf 'workload\tthreads\tbusy_cores\twaited_s\n' > "$out/busy.tsv"
nwork=$(cut -f1 "$out/workloads.tsv" | uniq | wc -l)
echo "bench_cpu.sh: $nwork workloads, threads: $threads, ktune budget: $budget$([ "$tune" = 1 ] || echo ' (not tuning)'), results in $out" >&2
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "start: $(date -u +%FT%TZ) load average $load_start" > "$out/run.txt"

# Cores kept busy by all processes over 0.3 s (this script is idle meanwhile, so: others).
busy_cores() {
  local a b
  read -r -a a < /proc/stat
  sleep 0.3
  read -r -a b < /proc/stat
  # cpu user nice system idle iowait irq softirq steal
  local busy=$(( b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8] ))
  local idle=$(( b[4] + b[5] - a[4] - a[5] ))
  awk -v b="$busy" -v i="$idle" -v n="$(nproc)" 'BEGIN { printf "%.2f", (b + i > 0) ? n * b / (b + i) : 0 }'
}
# On a shared machine, wait (up to --wait-idle seconds) for the others to quieten down.
wait_for_idle() {
  local t0=$SECONDS busy=""
  while :; do
    busy=$(busy_cores)
    awk -v x="$busy" 'BEGIN { exit !(x < 0.25) }' && break
    (( SECONDS - t0 >= wait_idle )) && break
  done
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$busy" "$((SECONDS - t0))" >> "$out/busy.tsv"
}

# The tune summary's best.gflops; for replay's output, the best gflops of its list.
gflops_of() {
  python3 -c '
import json, re, sys
text = sys.stdin.read()
try:
    d = json.loads(text)
    if isinstance(d, list):  # ktune replay --json: one object per replayed candidate
        v = [x.get("gflops") for x in d if isinstance(x, dict) and x.get("gflops") is not None]
        print(max(v) if v else "null"); sys.exit(0)
    for get in (lambda d: d["best"]["gflops"], lambda d: d["gflops"], lambda d: d["result"]["gflops"]):
        try:
            v = get(d)
            if v is not None:
                print(v); sys.exit(0)
        except (KeyError, TypeError):
            pass
except ValueError:
    m = re.findall(r"([0-9.]+)\s*GFLOP/s", text)
    if m:
        print(m[-1]); sys.exit(0)
print("null")'
}

# The time (ms) that goes with gflops_of's figure: the tune summary's best.time_ms, or the
# time_ms of the fastest replayed candidate; "null" if there is none. The report computes
# ktune's GFLOP/s from it and the workload's MACs, as the baselines do: ktune's own figure
# counts the kernel's flops, which include the padding stage's selects (6-24% more than
# 2 x MACs on the depthwise layers).
time_ms_of() {
  python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
    if isinstance(d, list):
        v = [x for x in d if isinstance(x, dict) and x.get("gflops") is not None and x.get("time_ms")]
        print(max(v, key=lambda x: x["gflops"])["time_ms"] if v else "null"); sys.exit(0)
    for get in (lambda d: d["best"]["time_ms"], lambda d: d["time_ms"], lambda d: d["result"]["median_ms"]):
        try:
            v = get(d)
            if v:
                print(v); sys.exit(0)
        except (KeyError, TypeError):
            pass
except ValueError:
    pass
print("null")'
}

# Replays the schedules of $schedules that compute workload $1 ('-': those computing none of
# the workloads) with $2 threads, each right after waiting for a quiet machine; like the
# baselines, the best of --repeat runs counts.
replay_schedules() {
  local sid f f_abs res g gt x k
  while IFS=$'\t' read -r sid f; do
    [ "$sid" = "$1" ] || continue
    echo "bench_cpu.sh: [$2 thread(s)] replaying $(basename "$f")" >&2
    wait_for_idle "$(basename "$f")" "$2"
    # The replay command's flags are not settled: try --json, then plain text. Run in $out
    # so that a default log lands there.
    f_abs="$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
    g=null
    gt=null
    for ((k = 0; k < repeat; k++)); do
      res=$(cd "$out" && "$ktune" replay "$f_abs" --threads="$2" --json 2>> "$out/ktune-stderr.txt") ||
        res=$(cd "$out" && "$ktune" replay "$f_abs" --threads="$2" 2>> "$out/ktune-stderr.txt") || true
      x=$(printf '%s' "$res" | gflops_of)
      if [ "$g" = null ] || { [ "$x" != null ] && awk -v a="$x" -v b="$g" 'BEGIN { exit !(a > b) }'; }; then
        g=$x
        gt=$(printf '%s' "$res" | time_ms_of)
      fi
    done
    [ "$g" = null ] && echo "$(basename "$f") threads=$2: replay gave no time (see ktune-stderr.txt)" | tee -a "$out/errors.txt" >&2
    python3 -c 'import json, sys
f, t, g, gt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = json.load(open(f))
print(json.dumps({"source": "replay", "file": f, "kernel": s.get("kernel"), "params": s.get("params", {}),
                  "threads": t, "gflops": None if g == "null" else float(g),
                  "time_ms": None if gt == "null" else float(gt)}))' "$f" "$2" "$g" "$gt" >> "$out/ktune.jsonl"
  done < "$out/schedules.tsv"
}
if [ "$replay" = 1 ]; then
  # A schedule of a listed workload is replayed right after that workload's baselines.
  python3 "$root/scripts/bench/report_cpu.py" --workloads "$out/workloads.tsv" \
    --match-schedules "$schedules"/*.json > "$out/schedules.tsv"
fi

for t in $threads; do
  export OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t"
  i=0
  prev=""
  # One line per (workload, ktune kernel); the baselines run once per workload.
  while IFS=$'\t' read -r id group kernel flags _macs; do
    if [ "$id" != "$prev" ]; then
      prev="$id"
      i=$((i + 1))
      echo "bench_cpu.sh: [$t thread(s)] $i/$nwork $id" >&2
      wait_for_idle "$id" "$t"
      # Baselines: each library in its own process, so one's spinning thread pool does not
      # steal cycles from the other's.
      "$baselines" --lib onednn --threads "$t" --repeat "$repeat" --only "$id" >> "$out/baselines.jsonl" 2>> "$out/baselines.txt" ||
        echo "$id threads=$t: oneDNN baseline failed (see baselines.txt)" | tee -a "$out/errors.txt" >&2
      if [ "$t" -gt 1 ] && [ -z "${OMP_WAIT_POLICY:-}" ]; then
        # With several threads on a busy machine, OpenMP's spinning barriers can lose whole
        # time slices to other processes (a 20 us kernel then takes 4 ms); passive waiting
        # (as ktune's thread pool yields) avoids that, spinning is faster on an idle machine.
        # Both are measured; the report keeps the faster.
        OMP_WAIT_POLICY=passive "$baselines" --lib onednn --threads "$t" --repeat "$repeat" --only "$id" \
          >> "$out/baselines.jsonl" 2>> "$out/baselines.txt" ||
          echo "$id threads=$t: oneDNN baseline (OMP_WAIT_POLICY=passive) failed (see baselines.txt)" | tee -a "$out/errors.txt" >&2
      fi
      if [ "$group" = matmul ]; then
        "$baselines" --lib openblas --threads "$t" --repeat "$repeat" --only "$id" >> "$out/baselines.jsonl" 2>> "$out/baselines.txt" ||
          echo "$id threads=$t: OpenBLAS baseline failed (see baselines.txt)" | tee -a "$out/errors.txt" >&2
      fi
      [ "$replay" = 1 ] && replay_schedules "$id" "$t"
    fi
    if [ "$tune" = 1 ] && { [ -z "$ktune_kernels" ] || [[ ",$ktune_kernels," == *",$kernel,"* ]]; }; then
      echo "== $id, $kernel, $t thread(s)" >> "$out/ktune-stderr.txt"
      wait_for_idle "$id" "$t"
      # shellcheck disable=SC2086
      summary=$("$ktune" "$kernel" $flags ${KTUNE_FLAGS:-} --budget="$budget" --threads="$t" --json \
                 --log="$out/ktune-$id-$kernel-t$t.jsonl" 2>> "$out/ktune-stderr.txt") || true
      g=$(printf '%s' "$summary" | gflops_of)
      tm=$(printf '%s' "$summary" | time_ms_of)
      secs=$(printf '%s' "$summary" | python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("tuning_seconds"))
except Exception: print("null")')
      [ "$g" = null ] && echo "$id $kernel threads=$t: ktune found no valid candidate (see ktune-stderr.txt)" | tee -a "$out/errors.txt" >&2
      # The whole summary (refinement moves and their p-values, the re-measured time) too.
      printf '%s\n' "$summary" > "$out/ktune-$id-$kernel-t$t.summary.json"
      sus=$(printf '%s' "$summary" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["sustained"]["time_ms"])
except Exception: print("null")')
      printf '{"workload":"%s","kernel":"%s","threads":%s,"source":"tune","budget":%s,"gflops":%s,"time_ms":%s,"sustained_ms":%s,"tuning_seconds":%s}\n' \
        "$id" "$kernel" "$t" "$budget" "$g" "${tm:-null}" "${sus:-null}" "${secs:-null}" >> "$out/ktune.jsonl"
    fi
  done < "$out/workloads.tsv"

  [ "$replay" = 1 ] && replay_schedules - "$t"
done
elapsed=$(( $(date +%s) - start ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "end:   $(date -u +%FT%TZ) load average $load_end, $elapsed s" >> "$out/run.txt"

report_args=(--workloads "$out/workloads.tsv" --baselines "$out/baselines.jsonl" --ktune "$out/ktune.jsonl"
             --threads "$threads" --markdown "$out/table.md" --busy "$out/busy.tsv" --wait-idle "$wait_idle")
for l in "${logs[@]}"; do report_args+=(--log "$l"); done
python3 "$root/scripts/bench/report_cpu.py" "${report_args[@]}" | tee "$out/table.txt"
echo "bench_cpu.sh: done in $((elapsed / 60)) min $((elapsed % 60)) s (load average $load_start at the start, $load_end at the end); raw results, logs and table.md in $out" >&2
if [ -s "$out/errors.txt" ]; then
  echo "bench_cpu.sh: $(wc -l < "$out/errors.txt") problem(s), see $out/errors.txt" >&2
fi
}

main "$@"
