"""Streaming capacity: many devices' 1 s chunks (1 kHz EMG + 50 Hz ACC) through StreamDetector.

One process, one core: every device's detector gets its next second in turn, as an ingest
worker interleaves live wearers. Per-chunk cost is ``push_acc`` + ``push_emg`` +
``pop_series`` for one device-second; live wearers per core = chunks per second of CPU.

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
    from detection.stream import StreamDetector
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
    e_n, a_n = int(EMG_RATE_HZ), int(ACC_RATE_HZ)
    offsets = np.random.default_rng(seed + 1).integers(0, source_s - seconds, devices)
    per_run: list[dict[str, float]] = []
    costs_ns: list[int] = []
    for _ in range(max(1, runs)):
        detectors = [StreamDetector(f"bench-{d:05d}") for d in range(devices)]
        costs = np.empty(devices * seconds, dtype=np.int64)
        k = 0
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        for s in range(seconds):
            t_us = 1_767_650_000_000_000 + s * 1_000_000
            for d, det in enumerate(detectors):
                i = int(offsets[d]) + s
                t0 = time.perf_counter_ns()
                det.push_acc(acc[i * a_n : (i + 1) * a_n], t_us, ACC_RATE_HZ)
                det.push_emg(emg[i * e_n : (i + 1) * e_n], t_us, EMG_RATE_HZ)
                det.pop_series()
                costs[k] = time.perf_counter_ns() - t0
                k += 1
        cpu_s = time.process_time() - cpu0
        wall_s = time.perf_counter() - wall0
        per_run.append({"cpu_s": cpu_s, "wall_s": wall_s, "chunks_per_cpu_s": k / cpu_s})
        costs_ns = costs.tolist()
    rates = sorted(r["chunks_per_cpu_s"] for r in per_run)
    median_rate = float(np.median(rates))
    costs_ms = [c / 1e6 for c in costs_ns]
    return {
        "devices": devices,
        "seconds": seconds,
        "chunks": devices * seconds,
        "runs": per_run,
        "chunks_per_core_s": median_rate,
        "live_wearers_per_core": median_rate,  # one chunk per wearer per second
        "p50_ms": percentile(costs_ms, 50),
        "p99_ms": percentile(costs_ms, 99),
        "max_ms": max(costs_ms),
    }


def render(f: dict[str, Any]) -> str:
    rows = [
        (
            f"{f['devices']} x {f['seconds']} s",
            f"{f['chunks_per_core_s']:,.0f}",
            f"{f['live_wearers_per_core']:,.0f}",
            f"{f['p50_ms']:.3f}",
            f"{f['p99_ms']:.3f}",
            f"{f['max_ms']:.2f}",
        )
    ]
    return table(
        rows,
        (
            "devices x chunks",
            "chunks/s per core",
            "live wearers per core",
            "p50 ms/chunk",
            "p99 ms/chunk",
            "max ms",
        ),
    )


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
