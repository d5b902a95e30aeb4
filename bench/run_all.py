"""Run every benchmark in turn and print one summary table (``make bench``).

    python -m bench.run_all [--quick] [--skip e2e ...]

Each benchmark runs in a process of its own, as it does alone (``python -m bench.bench_<name>``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.bench_stream import MODE_LABELS, WORKLOADS
from bench.common import RESULTS_DIR, machine, table, write_result

BENCHMARKS = ("detector", "stream", "e2e", "sync", "api")


def _summary_rows(name: str, doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    if name == "detector":
        rows = [
            ("detector", "offline real-time factor", f"{doc['ours']['realtime_x']:,.0f}x"),
            ("detector", "ours / sosfilt floor", f"{doc['ours_over_floor']:.2f}x"),
            (
                "detector",
                "ours / the same sosfilt in 60 s pieces",
                f"{doc['ours_over_floor_in_pieces']:.2f}x",
            ),
        ]
        for anchor, a in doc["anchors"].items():
            if "anchor_over_ours" in a:
                rows.append(("detector", f"{anchor} time / ours", f"{a['anchor_over_ours']:,.0f}x"))
        return rows
    if name == "stream":
        rows = []
        for workload in WORKLOADS:
            for mode in ("many", "alone"):
                m, label = doc[workload][mode], f"{workload} wearers, {MODE_LABELS[mode]}"
                rows += [
                    (
                        "stream",
                        f"live wearers per core, {label}",
                        f"{m['live_wearers_per_core']:,.0f}",
                    ),
                    (
                        "stream",
                        f"per-chunk p50 / p99, {label}",
                        f"{m['p50_ms']:.3f} / {m['p99_ms']:.3f} ms",
                    ),
                ]
        return rows
    if name == "e2e":
        rows = []
        for c in doc["cases"]:
            b = f"{c['backend']}, {c['devices']} wearers"
            if c.get("cores") is None:  # everything on every CPU (see bench_e2e)
                b += ", shared cores"
            rows += [
                (
                    "e2e",
                    f"{b}: frames/s, samples/s",
                    f"{c['frames_per_s']:,.0f}, {c['samples_per_s']:,.0f}",
                ),
                ("e2e", f"{b}: live wearers per worker", f"{c['live_wearers']:,.0f}"),
                (
                    "e2e",
                    f"{b}: worker CPU per frame, wearers per worker CPU s",
                    f"{c['cpu_ms_per_frame']:.3f} ms, {c['wearers_per_cpu_s']:,.0f}",
                ),
                (
                    "e2e",
                    f"{b}: alert p50 / p99",
                    f"{c['alert_p50_ms']:.0f} / {c['alert_p99_ms']:.0f} ms",
                ),
                (
                    "e2e",
                    f"{b}: episodes stored / labelled",
                    f"{c['episodes']['stored']} / {c['episodes']['labelled']}",
                ),
            ]
        return rows
    if name == "sync":
        return [
            (
                "sync",
                f"{doc['hours']:g} h night -> stored episodes, "
                + ("sync frames" if c["frame_s"] is None else f"{c['frame_s']:g} s frames"),
                f"{c['median_s']:.1f} s",
            )
            for c in doc["cases"]
        ]
    if name == "api" and "p50_ms" in doc:
        rows = [
            (
                "api",
                f"history, {doc['wearers']} wearers x 1 year: p50 / p95",
                f"{doc['p50_ms']:.1f} / {doc['p95_ms']:.1f} ms",
            )
        ]
        levels = doc.get("levels", [])
        if levels:
            by_kind = levels[0]["by_kind"]
            for kind in ("nights", "weekly"):
                if kind in by_kind:
                    k = by_kind[kind]
                    rows.append(
                        ("api", f"{kind}: p50 / p95", f"{k['p50_ms']:.1f} / {k['p95_ms']:.1f} ms")
                    )
            for level in levels:
                every = level["by_kind"]["all"]
                rows.append(
                    (
                        "api",
                        f"{level['concurrency']} connections: requests/s, p95 of all",
                        f"{level['requests_per_s']:,.0f}, {every['p95_ms']:.1f} ms",
                    )
                )
        return rows
    return [(name, "see its table", "-")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="Tiny sizes for every benchmark.")
    p.add_argument("--skip", nargs="*", default=[], choices=BENCHMARKS)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    timings: dict[str, float] = {}
    failed: list[str] = []
    suffix = "-quick" if args.quick else ""
    for name in BENCHMARKS:
        if name in args.skip:
            continue
        module = f"bench.bench_{name}"
        if importlib.util.find_spec(module) is None:
            continue  # not written yet
        print(f"\n## {name}\n", flush=True)
        t0 = time.perf_counter()
        bench_args = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
        # each in a process of its own: no memory, caches or threads carried from the one before
        # (peak RSS is per process), and a benchmark that fails is reported and the rest run
        code = subprocess.run([sys.executable, "-m", module, *bench_args], check=False).returncode
        if code:
            print(f"{name} failed (exit {code})", flush=True)
        timings[name] = time.perf_counter() - t0
        if code:
            failed.append(name)
            continue
        result = args.out / f"{name}{suffix}.json"
        if result.is_file():
            rows += _summary_rows(name, json.loads(result.read_text()))
    print("\n## Summary\n")
    print(table(rows, ("benchmark", "figure", "value")))
    m = machine()
    print(
        f"\n{m['nproc']} x {m['cpu']}, Python {m['python']}, numpy {m['numpy']}; "
        f"total {sum(timings.values()):.0f} s"
    )
    write_result(args.out, "summary", {"rows": rows, "seconds": timings}, quick=args.quick)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
