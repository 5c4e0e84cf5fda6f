#!/usr/bin/env python3
"""What the refinement gained, side by side: reads the versus.jsonl of
`scripts/bench_versus.sh --schedules S` where S came from
`scripts/bench/refine_report.py DIR --schedules-out S` (schedules NAME-a-start and NAME-b-end,
timed in the same rounds), and prints per tune the median over rounds of start time / end time
with its quartiles: above 1 the refinement made the kernel faster; "faster" when the lower
quartile is above 1, "slower" when the upper one is below 1.

Usage: scripts/bench/refine_versus.py VERSUS_DIR_OR_JSONL
"""
import json
import os
import statistics
import sys


def quantile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    path = sys.argv[1]
    if os.path.isdir(path):
        path = os.path.join(path, "versus.jsonl")
    pairs = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            name = d.get("schedule") or ""
            for suffix, role in (("-a-start", "start"), ("-b-end", "end")):
                if name.endswith(suffix):
                    pairs.setdefault(name[: -len(suffix)], {})[role] = d["times_ms"]["ktune exported"]
    if not pairs:
        sys.exit(f"refine_versus.py: no NAME-a-start / NAME-b-end schedules in {path}")
    print("| tune | start / end | quartiles | verdict |")
    print("| --- | ---: | --- | --- |")
    counts = {"faster": 0, "slower": 0, "no different": 0}
    for name in sorted(pairs):
        p = pairs[name]
        if "start" not in p or "end" not in p:
            print(f"| {name} | - | - | missing {'start' if 'start' not in p else 'end'} |")
            continue
        r = [s / e for s, e in zip(p["start"], p["end"]) if s > 0 and e > 0]
        med, q1, q3 = statistics.median(r), quantile(r, 0.25), quantile(r, 0.75)
        verdict = "faster" if q1 > 1 else "slower" if q3 < 1 else "no different"
        counts[verdict] += 1
        print(f"| {name} | {med:.3f} | {q1:.3f}-{q3:.3f} | {verdict} |")
    print()
    print(f"{counts['faster']} faster (lower quartile > 1), {counts['slower']} slower (upper quartile < 1), "
          f"{counts['no different']} no different, of {sum(counts.values())}")


if __name__ == "__main__":
    main()
