#!/usr/bin/env python3
"""Curves and summary of scripts/bench_search.sh part (b).

Reads DIR/<workload>.<strategy>.jsonl (tuning logs), .json (ktune --json summaries),
wall.csv and memory.csv; writes DIR/curves.csv (best GFLOP/s after each trial, against
trials and seconds) and DIR/curves.svg, and prints a summary table: best GFLOP/s, trials and
wall time per strategy, the two-phase / evolutionary ratios, and peak memory.
Usage: scripts/search_curves.py DIR
"""
import csv
import glob
import json
import os
import sys
from datetime import datetime


def parse_ts(s):
    s = s.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in s else "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(s, fmt).timestamp()


def curve(log_path, summary_path):
    recs = []
    with open(log_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    # The curve is the search's: the final ranking's records re-measure earlier trials.
    recs = [r for r in recs if r.get("phase") != "final"]
    recs.sort(key=lambda r: r["trial"])
    if not recs:
        return []
    ts = [parse_ts(r["timestamp"]) for r in recs]
    total = None
    try:
        with open(summary_path) as f:
            total = json.load(f).get("tuning_seconds")
    except (OSError, ValueError):
        pass
    # Records are stamped when written; the run started before the first one was measured.
    offset = (total - (ts[-1] - ts[0])) if total else 0.0
    best = 0.0
    out = []
    for r, t in zip(recs, ts):
        g = r["result"].get("gflops") or 0.0
        if not r["result"].get("error"):
            best = max(best, g)
        out.append((r["trial"], t - ts[0] + offset, best, r.get("phase", "")))
    return out


def svg(curves, path):
    workloads = sorted({w for w, _ in curves})
    colors = {"two-phase": "#d62728", "evolutionary": "#1f77b4"}
    pw, ph, m = 420, 240, 50
    width, height = 2 * (pw + m) + m, len(workloads) * (ph + m + 20) + m
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">']
    for row, w in enumerate(workloads):
        y0 = m + row * (ph + m + 20)
        ymax = max((p[2] for (ww, s), c in curves.items() if ww == w for p in c), default=1) * 1.05 or 1
        for col, (xi, label) in enumerate([(0, "trials"), (1, "seconds")]):
            x0 = m + col * (pw + m)
            xmax = max((p[xi] for (ww, s), c in curves.items() if ww == w for p in c), default=1) or 1
            parts.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
            parts.append(f'<text x="{x0}" y="{y0 - 6}">{w}: best GFLOP/s against {label} (max x {xmax:.0f}, max y {ymax:.0f})</text>')
            for (ww, s), c in sorted(curves.items()):
                if ww != w or not c:
                    continue
                pts = " ".join(f"{x0 + pw * p[xi] / xmax:.1f},{y0 + ph - ph * p[2] / ymax:.1f}" for p in c)
                parts.append(f'<polyline fill="none" stroke="{colors.get(s, "#555")}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<text x="{m}" y="{y0 + ph + 16}" fill="{colors["two-phase"]}">two-phase</text>')
        parts.append(f'<text x="{m + 80}" y="{y0 + ph + 16}" fill="{colors["evolutionary"]}">evolutionary</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    d = sys.argv[1]
    curves = {}
    for log in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        base = os.path.basename(log)[: -len(".jsonl")]
        w, s = base.rsplit(".", 1)
        curves[(w, s)] = curve(log, os.path.join(d, base + ".json"))
    with open(os.path.join(d, "curves.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "strategy", "trial", "seconds", "best_gflops", "phase"])
        for (w, s), c in sorted(curves.items()):
            for p in c:
                wr.writerow([w, s, p[0], f"{p[1]:.3f}", f"{p[2]:.2f}", p[3]])
    svg(curves, os.path.join(d, "curves.svg"))

    wall = {}
    if os.path.exists(os.path.join(d, "wall.csv")):
        for r in csv.DictReader(open(os.path.join(d, "wall.csv"))):
            wall[(r["workload"], r["strategy"])] = float(r["wall_s"])
    mem = {}
    if os.path.exists(os.path.join(d, "memory.csv")):
        for r in csv.DictReader(open(os.path.join(d, "memory.csv"))):
            mem.setdefault((r["workload"], r["strategy"]), []).append(int(r["rss_kib"]))

    print("| workload | strategy | trials | best GFLOP/s | wall s | peak RSS MiB | RSS at 10% / end MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (w, s), c in sorted(curves.items()):
        if not c:
            continue
        m = [x for x in mem.get((w, s), []) if x > 0] or [0]
        early = m[max(0, len(m) // 10)]
        print(f"| {w} | {s} | {len(c)} | {c[-1][2]:.1f} | {wall.get((w, s), float('nan')):.0f} | "
              f"{max(m) / 1024:.0f} | {early / 1024:.0f} / {m[-1] / 1024:.0f} |")
    print()
    print("| workload | two-phase / evolutionary best | two-phase / evolutionary wall time |")
    print("| --- | ---: | ---: |")
    for w in sorted({w for w, _ in curves}):
        tp, ev = curves.get((w, "two-phase")), curves.get((w, "evolutionary"))
        if not tp or not ev or not ev[-1][2]:
            continue
        ratio_t = wall.get((w, "two-phase"), float("nan")) / wall.get((w, "evolutionary"), float("nan"))
        print(f"| {w} | {tp[-1][2] / ev[-1][2]:.3f} | {ratio_t:.3f} |")


if __name__ == "__main__":
    main()
