"""Streaming capacity: many devices' 1 s chunks (1 kHz EMG + 50 Hz ACC) through StreamDetector.

One process, one core: every device's detector gets its next second in turn, as an ingest
worker interleaves live wearers, once device by device (``push_acc`` + ``push_emg`` +
``pop_series``) and once as a worker feeds a second of many wearers (``push_acc_many`` +
``push_emg_many``: one stacked front end for all of them); live wearers per core = chunks
per second of CPU.

    python -m bench.bench_stream [--quick] [--devices 200] [--seconds 60]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from bench.common import parser, percentile, table, write_result

NAME = "stream"
EMG_RATE_HZ = 1000.0
ACC_RATE_HZ = 50.0


def run(devices: int, seconds: int, seed: int, runs: int) -> dict[str, Any]:
    """Feed ``devices`` x ``seconds`` chunks ``runs`` times; return cost figures."""
    from simulator.night import simulate_night

    # One simulated night (with cramps and movements) shared by the devices, each device
    # starting at its own offset into it so their states differ.
    source_s = max(seconds + 60, 600)
    rec = simulate_night(
        np.random.default_rng(seed),
        "frequent-cramps",
        duration_s=source_s,
        emg_rate_hz=EMG_RATE_HZ,
        acc_rate_hz=ACC_RATE_HZ,
    ).recording
    emg = np.ascontiguousarray(rec.emg_uv, dtype=np.float64)
    acc = np.ascontiguousarray(rec.acc_g, dtype=np.float64)
    offsets = np.random.default_rng(seed + 1).integers(0, source_s - seconds, devices)
    figures: dict[str, Any] = {"devices": devices, "seconds": seconds, "chunks": devices * seconds}
    per_run: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    costs_ms: dict[str, list[float]] = {}
    for _ in range(max(1, runs)):
        for mode in MODES:  # alternated, so both see the same share of the machine's noise
            run_figures, costs = one_run(mode, emg, acc, offsets, seconds)
            per_run[mode].append(run_figures)
            costs_ms[mode] = costs
    for mode in MODES:
        rate = float(np.median([r["chunks_per_cpu_s"] for r in per_run[mode]]))
        figures[mode] = {
            "runs": per_run[mode],
            "chunks_per_core_s": rate,
            "live_wearers_per_core": rate,  # one chunk per wearer per second
            "p50_ms": percentile(costs_ms[mode], 50),
            "p99_ms": percentile(costs_ms[mode], 99),
            "max_ms": max(costs_ms[mode]),
        }
    figures["many_over_alone"] = float(
        np.median(
            [
                m["chunks_per_cpu_s"] / a["chunks_per_cpu_s"]
                for m, a in zip(per_run["many"], per_run["alone"], strict=True)
            ]
        )
    )
    # the headline: how a worker feeds a second of many wearers (ingest/worker.py)
    figures["live_wearers_per_core"] = figures["many"]["live_wearers_per_core"]
    figures["p99_ms"] = figures["many"]["p99_ms"]
    return figures


MODES = ("alone", "many")
MODE_LABELS = {"alone": "one device per call", "many": "a second of all devices per call"}


def one_run(
    mode: str, emg: Any, acc: Any, offsets: Any, seconds: int
) -> tuple[dict[str, float], list[float]]:
    """Every device's next second in turn (``alone``: ``push_acc`` + ``push_emg`` +
    ``pop_series`` per device; ``many``: ``push_acc_many`` and ``push_emg_many`` of all
    devices' second, then each ``pop_series``). Per-chunk costs: each device's own calls
    (alone) or each second's calls divided by the devices (many)."""
    from detection.stream import StreamDetector, push_acc_many, push_emg_many

    devices = offsets.shape[0]
    e_n, a_n = int(EMG_RATE_HZ), int(ACC_RATE_HZ)
    detectors = [StreamDetector(f"bench-{d:05d}") for d in range(devices)]
    costs: list[float] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for s in range(seconds):
        t_us = 1_767_650_000_000_000 + s * 1_000_000
        index = [int(offsets[d]) + s for d in range(devices)]
        if mode == "many":
            t0 = time.perf_counter_ns()
            acc_pushes = [
                (det, acc[i * a_n : (i + 1) * a_n], t_us, ACC_RATE_HZ)
                for det, i in zip(detectors, index, strict=True)
            ]
            emg_pushes = [
                (det, emg[i * e_n : (i + 1) * e_n], t_us, EMG_RATE_HZ)
                for det, i in zip(detectors, index, strict=True)
            ]
            for result in (*push_acc_many(acc_pushes), *push_emg_many(emg_pushes)):
                if not isinstance(result, list):
                    raise result
            for det in detectors:
                det.pop_series()
            costs += [(time.perf_counter_ns() - t0) / devices / 1e6] * devices
            continue
        for det, i in zip(detectors, index, strict=True):
            t0 = time.perf_counter_ns()
            det.push_acc(acc[i * a_n : (i + 1) * a_n], t_us, ACC_RATE_HZ)
            det.push_emg(emg[i * e_n : (i + 1) * e_n], t_us, EMG_RATE_HZ)
            det.pop_series()
            costs.append((time.perf_counter_ns() - t0) / 1e6)
    cpu_s = time.process_time() - cpu0
    wall_s = time.perf_counter() - wall0
    chunks = devices * seconds
    return {"cpu_s": cpu_s, "wall_s": wall_s, "chunks_per_cpu_s": chunks / cpu_s}, costs


def render(f: dict[str, Any]) -> str:
    rows = [
        (
            MODE_LABELS[mode],
            f"{f['devices']} x {f['seconds']} s",
            f"{f[mode]['live_wearers_per_core']:,.0f}",
            f"{f[mode]['p50_ms']:.3f}",
            f"{f[mode]['p99_ms']:.3f}",
            f"{f[mode]['max_ms']:.2f}",
        )
        for mode in MODES
    ]
    text = table(
        rows,
        (
            "pushes",
            "devices x chunks",
            "live wearers (chunks/s) per core",
            "p50 ms/chunk",
            "p99 ms/chunk",
            "max ms",
        ),
    )
    return text + f"\nmany / alone (median of paired runs): {f['many_over_alone']:.2f}x"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--seconds", type=int, default=None)
    args = p.parse_args(argv)
    devices = args.devices or (20 if args.quick else 200)
    seconds = args.seconds or (10 if args.quick else 60)
    figures = run(devices, seconds, args.seed, 1 if args.quick else args.runs)
    print(render(figures))
    print(f"wrote {write_result(args.out, NAME, figures, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
