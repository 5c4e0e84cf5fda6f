#!/usr/bin/env python3
"""What the refinement phase did in each two-phase tune of a scripts/bench_cpu.sh run.

Reads DIR/ktune-*.summary.json (the `ktune ... --json` summaries bench_cpu.sh keeps) and
prints, per tune: the exploration's best time, the final best logged time, their ratio, the
refinement's accepted moves, the product of their gains on the re-measurements that accepted
them, and the p-value of the Welch t-test that accepted each (a move is accepted only
after the centre and the neighbour are re-measured interleaved), the re-measured (sustained)
time and the tuning wall time; then how many tunes the refinement improved.

With --schedules-out OUT it also writes, for each tune whose refinement accepted a move, the
exploration's best schedule (OUT/NAME-a-start.json) and the one its last accepted move went to
(OUT/NAME-b-end.json), both from the tune's log, for `scripts/bench_versus.sh --schedules OUT`:
the two timed side by side in the same rounds, the fairest measure of what refinement gained.
(The trial of an accepted move is that of the candidate moved to since commit "droplet: an
accepted move's trial is the candidate's"; earlier logs numbered it by the end of its batch.)

DIR may also hold scripts/bench_search.sh part b's summaries (NAME.two-phase.json).

Usage: scripts/bench/refine_report.py DIR [--markdown FILE] [--schedules-out OUT]
"""
import argparse
import glob
import json
import os
import sys


def write_pair(summary, path, name, trial, out):
    """Writes the exploration's best and the refinement's last accepted point; 1 if written."""
    log = summary.get("log") or ""
    if not os.path.isabs(log) or not os.path.exists(log):
        log = os.path.join(os.path.dirname(path), os.path.basename(log))
    try:
        recs = [json.loads(line) for line in open(log) if line.strip()]
    except (OSError, ValueError) as e:
        print(f"refine_report.py: {name}: cannot read its log {log}: {e}", file=sys.stderr)
        return 0
    ok = [r for r in recs if (r.get("result") or {}).get("error") is None and r.get("steps")]
    explore = [r for r in ok if r.get("phase") == "explore"]
    end = [r for r in ok if r.get("phase") == "refine" and r.get("trial") == trial]
    if not explore or not end:
        print(f"refine_report.py: {name}: no exploration best or no valid refine record at trial {trial} "
              f"in {log}; skipped", file=sys.stderr)
        return 0
    start = min(explore, key=lambda r: r["result"]["median_ms"])
    os.makedirs(out, exist_ok=True)
    for tag, r in (("a-start", start), ("b-end", end[0])):
        w = r["workload"]
        with open(os.path.join(out, f"{name}-{tag}.json"), "w") as f:
            json.dump({"kernel": w["kernel"], "params": w["params"], "steps": r["steps"]}, f)
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--markdown")
    ap.add_argument("--schedules-out")
    a = ap.parse_args()
    rows = []
    written = 0
    paths = sorted(glob.glob(os.path.join(a.dir, "ktune-*.summary.json"))) + \
        sorted(glob.glob(os.path.join(a.dir, "*.two-phase.json")))
    for path in paths:
        try:
            d = json.load(open(path))
        except (OSError, ValueError):
            print(f"refine_report.py: {path}: not a ktune summary, skipped", file=sys.stderr)
            continue
        ref = d.get("refinement")
        best = d.get("best")
        if not ref or not best:
            continue
        base = os.path.basename(path)
        if base.startswith("ktune-") and base.endswith(".summary.json"):
            name = base[len("ktune-"):-len(".summary.json")]
        else:
            name = base[:-len(".two-phase.json")]
        moves = ref.get("accepted") or []
        if a.schedules_out and moves:
            written += write_pair(d, path, name, moves[-1]["trial"], a.schedules_out)
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
    if a.schedules_out:
        lines.append(f"wrote {written} start/end schedule pairs to {a.schedules_out}")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
