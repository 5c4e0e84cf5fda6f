#!/usr/bin/env python3
"""What the refinement phase did in each two-phase tune of a scripts/bench_cpu.sh run.

Reads DIR/ktune-*.summary.json (the `ktune ... --json` summaries bench_cpu.sh keeps) and
prints, per tune: the exploration's best time, the final best logged time, their ratio, the
refinement's accepted moves, the product of their gains on the re-measurements that accepted
them, and the p-value of the Welch t-test that accepted each (a move is accepted only
after the centre and the neighbour are re-measured interleaved), the re-measured (sustained)
time and the tuning wall time; then how many tunes the refinement improved.

Usage: scripts/bench/refine_report.py DIR [--markdown FILE]
"""
import argparse
import glob
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    rows = []
    for path in sorted(glob.glob(os.path.join(a.dir, "ktune-*.summary.json"))):
        try:
            d = json.load(open(path))
        except (OSError, ValueError):
            print(f"refine_report.py: {path}: not a ktune summary, skipped", file=sys.stderr)
            continue
        ref = d.get("refinement")
        best = d.get("best")
        if not ref or not best:
            continue
        name = os.path.basename(path)[len("ktune-"):-len(".summary.json")]
        moves = ref.get("accepted") or []
        explore = ref.get("explore_best_ms") or 0
        final = best["time_ms"]
        sus = (d.get("sustained") or {}).get("time_ms")
        ps = [m["p_value"] for m in moves if m.get("p_value") is not None]
        # The moves' own gains, on the interleaved re-measurements that accepted them (the
        # final best logged time can also be a lucky timing of a point that was not accepted).
        confirmed = 1.0
        for m in moves:
            if m.get("from_ms") and m.get("to_ms"):
                confirmed *= m["from_ms"] / m["to_ms"]
        rows.append({
            "tune": name,
            "explore_ms": explore,
            "final_ms": final,
            "gain": explore / final if explore and final else None,
            "moves": len(moves),
            "confirmed": confirmed,
            "p_values": ", ".join(f"{p:.2g}" for p in ps) or "-",
            "converged": ref.get("converged"),
            "refine_trials": (d.get("phase_trials") or {}).get("refine", 0),
            "sustained_ms": sus,
            "seconds": d.get("tuning_seconds"),
        })
    if not rows:
        print(f"refine_report.py: no two-phase summary in {a.dir}", file=sys.stderr)
        return 2
    head = ["tune", "exploration best ms", "final best ms", "ratio", "accepted moves", "their gain", "p-values",
            "refine trials", "converged", "sustained ms", "tune s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["tune"], f"{r['explore_ms']:.4g}", f"{r['final_ms']:.4g}",
            f"{r['gain']:.3f}" if r["gain"] else "-", str(r["moves"]), f"{r['confirmed']:.3f}", r["p_values"],
            str(r["refine_trials"]), "yes" if r["converged"] else "no",
            f"{r['sustained_ms']:.4g}" if r["sustained_ms"] else "-",
            f"{r['seconds']:.0f}" if r["seconds"] else "-"]) + " |")
    improved = sum(1 for r in rows if r["moves"] > 0)
    lines.append("")
    lines.append(f"refinement accepted at least one move (p < 0.05 on interleaved re-measurements) in "
                 f"{improved} of {len(rows)} tunes")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
