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


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    path = sys.argv[1]
    if os.path.isdir(path):
        path = os.path.join(path, "versus.jsonl")
    if not os.path.isfile(path):
        print(f"refine_versus.py: no {path} (give a bench_versus.sh --out folder or its versus.jsonl)",
              file=sys.stderr)
        sys.exit(2)
    pairs = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"refine_versus.py: {path}:{n}: not a JSON line ({e})", file=sys.stderr)
                sys.exit(2)
            name = d.get("schedule") or ""
            for suffix, role in (("-a-start", "start"), ("-b-end", "end")):
                if name.endswith(suffix):
                    pairs.setdefault(name[: -len(suffix)], {})[role] = d["times_ms"]["ktune exported"]
    if not pairs:
        print(f"refine_versus.py: no NAME-a-start / NAME-b-end schedules in {path}", file=sys.stderr)
        sys.exit(2)
    print("| tune | start / end | quartiles | verdict |")
    print("| --- | ---: | --- | --- |")
    counts = {"faster": 0, "slower": 0, "no different": 0}
    for name in sorted(pairs):
        p = pairs[name]
        if "start" not in p or "end" not in p:
            print(f"| {name} | - | - | missing {'start' if 'start' not in p else 'end'} |")
            continue
        r = [s / e for s, e in zip(p["start"], p["end"]) if s > 0 and e > 0]
        q1, med, q3 = statistics.quantiles(r, n=4, method="inclusive")
        verdict = "faster" if q1 > 1 else "slower" if q3 < 1 else "no different"
        counts[verdict] += 1
        print(f"| {name} | {med:.3f} | {q1:.3f}-{q3:.3f} | {verdict} |")
    print()
    print(f"{counts['faster']} faster (lower quartile > 1), {counts['slower']} slower (upper quartile < 1), "
          f"{counts['no different']} no different, of {sum(counts.values())}")


if __name__ == "__main__":
    main()
