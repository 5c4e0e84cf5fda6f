#!/usr/bin/env python3
"""Side-by-side check of scripts/bench_search.sh part (b).

A search's best logged time is the best of many noisy measurements taken over many minutes,
and the more candidates a search measures the more optimistic its best logged time is; on
this shared machine the speed of a kernel also drifts by tens of percent between minutes
(matmul 512^3 runs at 0.9 ms in one stretch and 1.4 ms in the next). So the best kernel of
each log (`ktune best LOG`) is exported and timed in one process with the other strategy's
best and oneDNN, in alternating rounds of short adjacent slices (scripts/bench_versus.sh,
--rounds rounds), and the two are compared round by round: per round, the evolutionary
kernel's time / the two-phase kernel's time (above 1: two-phase is faster); the median over
the rounds and its quartiles. Prints a markdown table and writes DIR/confirm.csv; the
exported kernels and every round's times are in DIR/confirm/.

Usage: scripts/search_confirm.py --ktune KTUNE [--threads T] [--rounds R] DIR
"""
import argparse
import csv
import glob
import json
import math
import os
import statistics
import subprocess
import sys

STRATEGIES = ("two-phase", "evolutionary")


def quantile(v, q):
    v = sorted(v)
    x = q * (len(v) - 1)
    lo = math.floor(x)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (x - lo)


def best_schedule(ktune, log, out):
    p = subprocess.run([ktune, "best", log, "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ktune best {log} exited with {p.returncode}: {p.stderr.strip()}")
    rows = json.loads(p.stdout)
    if len(rows) != 1:
        raise RuntimeError(f"ktune best {log}: expected one workload, got {len(rows)}")
    r = rows[0]["record"]
    with open(out, "w") as f:
        json.dump({"kernel": r["workload"]["kernel"], "params": r["workload"]["params"], "steps": r["steps"]}, f)
    return r["result"]["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ktune", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=200, help="side-by-side rounds per workload")
    ap.add_argument("dir")
    a = ap.parse_args()

    workloads = sorted({os.path.basename(p).split(".")[0]
                        for p in glob.glob(os.path.join(a.dir, "*.two-phase.jsonl"))})
    workloads = [w for w in workloads
                 if all(os.path.exists(os.path.join(a.dir, f"{w}.{s}.jsonl")) for s in STRATEGIES)]
    if not workloads:
        print("search_confirm.py: no workload has both a two-phase and an evolutionary log", file=sys.stderr)
        return 2
    work = os.path.join(a.dir, "confirm")
    sched = os.path.join(work, "schedules")
    os.makedirs(sched, exist_ok=True)
    for f in glob.glob(os.path.join(sched, "*.json")):
        os.remove(f)
    logged = {}
    for w in workloads:
        for s in STRATEGIES:
            logged[w, s] = best_schedule(a.ktune, os.path.join(a.dir, f"{w}.{s}.jsonl"),
                                         os.path.join(sched, f"{w}.{s}.json"))
    versus = os.path.join(work, "versus")
    if os.path.isdir(versus):
        subprocess.run(["rm", "-rf", versus], check=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KTUNE=a.ktune)
    p = subprocess.run([os.path.join(root, "scripts", "bench_versus.sh"), "--schedules", sched,
                        "--threads", str(a.threads), "--rounds", str(a.rounds), "--out", versus], env=env,
                       stdout=subprocess.DEVNULL)
    path = os.path.join(versus, "versus.jsonl")
    if not os.path.exists(path):
        print(f"search_confirm.py: the side-by-side run failed (exit {p.returncode}; see {versus})", file=sys.stderr)
        return 1
    by = {}
    for line in open(path):
        r = json.loads(line)
        w, s = r["schedule"].split(".", 1)
        by[w, s] = r
    rows = []
    for w in workloads:
        if (w, "two-phase") not in by or (w, "evolutionary") not in by:
            print(f"search_confirm.py: {w}: no side-by-side result for both strategies", file=sys.stderr)
            continue
        tp = by[w, "two-phase"]["times_ms"]["ktune exported"]
        ev = by[w, "evolutionary"]["times_ms"]["ktune exported"]
        ratios = [e / t for t, e in zip(tp, ev)]
        rows.append({"workload": w, "rounds": len(ratios),
                     "two_phase_ms": statistics.median(tp), "evolutionary_ms": statistics.median(ev),
                     "ratio": statistics.median(ratios), "ratio_q1": quantile(ratios, 0.25),
                     "ratio_q3": quantile(ratios, 0.75),
                     "two_phase_vs_onednn": by[w, "two-phase"]["ratio_median"],
                     "evolutionary_vs_onednn": by[w, "evolutionary"]["ratio_median"],
                     "two_phase_logged_ms": logged[w, "two-phase"],
                     "evolutionary_logged_ms": logged[w, "evolutionary"],
                     "both_correct": bool(by[w, "two-phase"]["ok"] and by[w, "evolutionary"]["ok"])})
    if not rows:
        return 1
    with open(os.path.join(a.dir, "confirm.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"\nBest kernel of each log, both timed in one process in {a.rounds} alternating rounds with oneDNN "
          "(scripts/bench_versus.sh); two-phase / evolutionary = per round, the evolutionary kernel's time / the "
          "two-phase kernel's, median and quartiles over the rounds:\n")
    print("| workload | two-phase ms | evolutionary ms | two-phase / evolutionary | quartiles | "
          "vs oneDNN (two-phase, evolutionary) | final-ranking ms in the log (two-phase, evolutionary) |")
    print("| --- | ---: | ---: | ---: | --- | --- | --- |")
    for r in rows:
        print(f"| {r['workload']} | {r['two_phase_ms']:.4f} | {r['evolutionary_ms']:.4f} | {r['ratio']:.3f} | "
              f"{r['ratio_q1']:.3f}-{r['ratio_q3']:.3f} | {r['two_phase_vs_onednn']:.3f}, "
              f"{r['evolutionary_vs_onednn']:.3f} | {r['two_phase_logged_ms']:.4f}, {r['evolutionary_logged_ms']:.4f} |"
              + ("" if r["both_correct"] else " WRONG ANSWER"))
    return 0 if all(r["both_correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
