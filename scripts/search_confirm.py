#!/usr/bin/env python3
"""Side-by-side check of scripts/bench_search.sh part (b).

A search's best logged time is the best of many noisy measurements, and the more candidates a
search measures the more optimistic its best logged time is. So the best kernel of each log
(`ktune replay LOG`: rebuilt, verified against the reference, timed afresh) is re-timed here,
the two strategies alternately in the order A B B A A B B A ... (--rounds pairs), and the
medians are compared. Prints a markdown table and writes DIR/confirm.csv.

Usage: scripts/search_confirm.py --ktune KTUNE [--threads T] [--rounds R] DIR
"""
import argparse
import csv
import glob
import json
import os
import statistics
import subprocess
import sys


def replay(ktune, log, threads):
    p = subprocess.run([ktune, "replay", log, "--threads", str(threads), "--json"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ktune replay {log} exited with {p.returncode}: {p.stderr.strip()}")
    rows = json.loads(p.stdout)
    if len(rows) != 1 or rows[0].get("error"):
        raise RuntimeError(f"ktune replay {log}: {rows}")
    return rows[0]["gflops"], rows[0]["logged_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ktune", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4, help="ABBA pairs of replays per workload")
    ap.add_argument("dir")
    a = ap.parse_args()

    workloads = sorted({os.path.basename(p).split(".")[0]
                        for p in glob.glob(os.path.join(a.dir, "*.two-phase.jsonl"))})
    rows = []
    for w in workloads:
        logs = {s: os.path.join(a.dir, f"{w}.{s}.jsonl") for s in ("two-phase", "evolutionary")}
        if not all(os.path.exists(p) for p in logs.values()):
            continue
        times = {s: [] for s in logs}
        logged = {}
        for r in range(a.rounds):
            order = ["two-phase", "evolutionary"] if r % 2 == 0 else ["evolutionary", "two-phase"]
            for s in order:
                g, ms = replay(a.ktune, logs[s], a.threads)
                times[s].append(g)
                logged[s] = ms
        tp, ev = statistics.median(times["two-phase"]), statistics.median(times["evolutionary"])
        rows.append({"workload": w, "two_phase_gflops": tp, "evolutionary_gflops": ev, "ratio": tp / ev,
                     "two_phase_runs": " ".join(f"{x:.1f}" for x in times["two-phase"]),
                     "evolutionary_runs": " ".join(f"{x:.1f}" for x in times["evolutionary"])})
    if not rows:
        print("search_confirm.py: no workload has both a two-phase and an evolutionary log", file=sys.stderr)
        return 2
    with open(os.path.join(a.dir, "confirm.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"Best kernel of each log re-timed side by side ({a.rounds} ABBA pairs of `ktune replay`, median GFLOP/s):\n")
    print("| workload | two-phase | evolutionary | two-phase / evolutionary | two-phase runs | evolutionary runs |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        print(f"| {r['workload']} | {r['two_phase_gflops']:.1f} | {r['evolutionary_gflops']:.1f} | {r['ratio']:.3f} | "
              f"{r['two_phase_runs']} | {r['evolutionary_runs']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
