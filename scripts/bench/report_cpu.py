#!/usr/bin/env python3
"""Table of scripts/bench_cpu.sh results: per thread count and workload, ktune's GFLOP/s
(tuned here, best in the given tuning logs, replayed schedules; one column per ktune kernel
when a workload has several, e.g. conv2d and conv2d_nchwc), the baselines' GFLOP/s, and
ktune's best / best baseline, with the geometric mean of that ratio per group."""

import argparse
import json
import math
import sys

GROUP_TITLES = {
    "matmul": "matmul",
    "resnet18_conv": "ResNet-18 conv2d (batch 1)",
    "mobilenet_dw": "MobileNet-v2 depthwise 3x3 (batch 1)",
}


def read_jsonl(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"report_cpu.py: {path}:{n}: skipping a malformed line", file=sys.stderr)
    return rows


def parse_flags(flags):
    params = {}
    for f in flags.split():
        k, v = f[2:].split("=", 1)
        params[k] = int(v)
    return params


def params_match(wl_params, params):
    """A record's params name the workload: every flag agrees, other keys are defaults."""
    for k, v in wl_params.items():
        if k not in params or params[k] != v:
            return False
    extra_defaults = {"N": 1, "dilation": 1, "dtype": "f32"}
    for k, v in params.items():
        if k not in wl_params and k in extra_defaults and v != extra_defaults[k]:
            return False
    return True


def read_workloads(path):
    """The workloads in order, each {"id", "group", "kernels": ktune kernel -> its params}."""
    workloads, by_id = [], {}
    with open(path) as f:
        for line in f:
            wid, group, kernel, flags, macs = line.rstrip("\n").split("\t")
            if wid not in by_id:
                by_id[wid] = {"id": wid, "group": group, "kernels": {}, "macs": float(macs)}
                workloads.append(by_id[wid])
            by_id[wid]["kernels"][kernel] = parse_flags(flags)
    return workloads, by_id


def computes(w, kernel, params):
    """Whether ktune kernel `kernel` with `params` computes workload w."""
    kp = w["kernels"].get(kernel)
    return kp is not None and params_match(kp, params)


def rate(w, gflops, time_ms):
    """ktune's GFLOP/s as the baselines count it, 2 x MACs / time, when the time is known
    (ktune's own figure counts the kernel's flops, padding selects included)."""
    if w is not None and time_ms:
        return 2 * w["macs"] / (time_ms * 1e6)
    return gflops


def fmt(x, width=8):
    return f"{x:{width}.1f}" if x is not None else f"{'-':>{width}}"


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", required=True)
    ap.add_argument("--baselines")
    ap.add_argument("--ktune")
    ap.add_argument("--threads")
    ap.add_argument("--log", action="append", default=[])
    ap.add_argument("--markdown")
    ap.add_argument("--busy")
    ap.add_argument("--wait-idle", type=int, default=0)
    ap.add_argument("--sustained", action="store_true",
                    help="a tune's figure is its re-measured (sustained) time, not its best logged time")
    ap.add_argument("--match-schedules", nargs="*", metavar="FILE",
                    help="only print 'ID<TAB>FILE' per schedule file: the workload it computes ('-': none)")
    a = ap.parse_args()

    workloads, by_id = read_workloads(a.workloads)
    if a.match_schedules is not None:
        for path in a.match_schedules:
            with open(path) as f:
                s = json.load(f)
            ids = [w["id"] for w in workloads if computes(w, s.get("kernel"), s.get("params") or {})]
            print(f"{ids[0] if ids else '-'}\t{path}")
        return
    if not (a.baselines and a.ktune and a.threads):
        ap.error("--baselines, --ktune and --threads are required")
    threads = [int(t) for t in a.threads.split()]

    base = {}  # (workload, threads, lib/variant) -> gflops
    for r in read_jsonl(a.baselines):
        if r.get("ok", True):  # the fastest of repeated measurements (e.g. OpenMP wait policies)
            key = (r["workload"], r["threads"], r["lib"] + "/" + r["variant"])
            base[key] = max(base.get(key, 0), r["gflops"])

    # (workload, threads, kernel) -> GFLOP/s, per source
    tuned, replayed, unmatched = {}, {}, []
    for r in read_jsonl(a.ktune):
        if r.get("gflops") is None:
            continue
        if r["source"] == "tune":
            w = by_id.get(r["workload"])
            kernel = r.get("kernel") or (next(iter(w["kernels"])) if w else None)
            if a.sustained:
                if not r.get("sustained_ms"):
                    continue
                tuned[(r["workload"], r["threads"], kernel)] = 2 * w["macs"] / (r["sustained_ms"] * 1e6)
            else:
                tuned[(r["workload"], r["threads"], kernel)] = rate(w, r["gflops"], r.get("time_ms"))
        elif r["source"] == "replay":
            hit = False
            for w in workloads:
                if computes(w, r.get("kernel"), r.get("params") or {}):
                    key = (w["id"], r["threads"], r["kernel"])
                    replayed[key] = max(replayed.get(key, 0), rate(w, r["gflops"], r.get("time_ms")))
                    hit = True
            if not hit:
                unmatched.append(r)

    from_log = {}
    for path in a.log:
        for r in read_jsonl(path):
            res = r.get("result") or {}
            if res.get("error") is not None or res.get("gflops") is None:
                continue
            wl = r.get("workload") or {}
            params = dict(wl.get("params") or {})
            if "dtype" in wl:
                params.setdefault("dtype", wl["dtype"])
            for w in workloads:
                if computes(w, wl.get("kernel"), params):
                    key = (w["id"], r.get("threads"), wl["kernel"])
                    from_log[key] = max(from_log.get(key, 0), rate(w, res["gflops"], res.get("median_ms")))

    sources = [(label, src) for label, src, have in (("tuned", tuned, bool(tuned)),
                                                     ("log", from_log, bool(a.log)),
                                                     ("replay", replayed, bool(replayed) or bool(unmatched)))
               if have]
    text, md = [], []

    for t in threads:
        for group in ["matmul", "resnet18_conv", "mobilenet_dw"]:
            wls = [w for w in workloads if w["group"] == group]
            if not wls:
                continue
            is_mm = group == "matmul"
            v1 = "onednn/packed" if is_mm else "onednn/any"
            v2 = "onednn/plain" if is_mm else "onednn/nchw"
            # One ktune column per source and kernel (the kernel named when the group has several).
            kernels = []
            for w in wls:
                kernels += [k for k in w["kernels"] if k not in kernels]
            kcols = [(label, src, k) for label, src in sources for k in kernels
                     if label == "log" or any(key[2] == k for key in src)]
            cols = [f"ktune {label}" + (f" {k}" if len(kernels) > 1 else "") for label, _, k in kcols]
            cols += ["oneDNN packed B" if is_mm else "oneDNN any",
                     "oneDNN plain B" if is_mm else "oneDNN nchw"]
            if is_mm:
                cols.append("OpenBLAS")
            cols.append("ktune/best")
            title = f"{GROUP_TITLES[group]}, {t} thread{'s' if t > 1 else ''} (GFLOP/s)"
            text.append(title)
            widths = [max(16, len(c) + 2) for c in cols]
            text.append(f"{'workload':<30}" + "".join(f"{c:>{wd}}" for c, wd in zip(cols, widths)))
            md.append(f"**{title}**\n")
            md.append("| workload | " + " | ".join(cols) + " |")
            md.append("| --- |" + " ---: |" * len(cols))
            ratios = []
            for w in wls:
                vals = []
                kbest = None
                for _, src, k in kcols:
                    v = src.get((w["id"], t, k))
                    vals.append(v)
                    if v is not None:
                        kbest = max(kbest or 0, v)
                bl = [base.get((w["id"], t, v1)), base.get((w["id"], t, v2))]
                if is_mm:
                    bl.append(base.get((w["id"], t, "openblas/sgemm")))
                vals += bl
                present = [b for b in bl if b is not None]
                ratio = kbest / max(present) if kbest is not None and present else None
                if ratio is not None:
                    ratios.append(ratio)
                rtxt = f"{ratio:.2f}" if ratio is not None else "-"
                text.append(f"{w['id']:<30}" + "".join(fmt(v, wd) for v, wd in zip(vals, widths)) + f"{rtxt:>16}")
                md.append(f"| {w['id']} | " + " | ".join(f"{v:.1f}" if v is not None else "-" for v in vals)
                          + f" | {rtxt} |")
            g = geomean(ratios)
            gtxt = f"{g:.2f} over {len(ratios)} workload{'s' if len(ratios) != 1 else ''}" if g else "-"
            text.append(f"{'geomean ktune/best baseline':<30} {gtxt}")
            text.append("")
            md.append(f"| geomean ktune/best | " + " | ".join("" for _ in cols[:-1])
                      + f" | {g:.2f} |" if g else "| geomean ktune/best |" + " |" * len(cols))
            md.append("")
    for r in unmatched:
        line = (f"replayed {r['file']} ({r.get('kernel')} {r.get('params')}) at {r['threads']} "
                f"thread(s): {r['gflops']:.1f} GFLOP/s (no matching workload)")
        text.append(line)
        md.append(line + "\n")
    if a.busy:
        busy = []
        with open(a.busy) as f:
            next(f, None)
            for line in f:
                parts = line.split("\t")
                if len(parts) == 4:
                    busy.append((float(parts[2]), int(parts[3])))
        if busy:
            loads = sorted(b for b, _ in busy)
            quiet = sum(1 for b in loads if b < 0.25)
            line = (f"Load from other processes just before each of {len(busy)} measurements "
                    f"(after waiting up to {a.wait_idle} s for < 0.25 cores): median "
                    f"{loads[len(loads) // 2]:.2f} cores, max {loads[-1]:.2f}; quiet for {quiet}.")
            text.append(line)
            md.append(line + "\n")
    print("\n".join(text))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
