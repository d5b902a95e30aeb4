"""Streaming capacity: many devices' 1 s chunks (1 kHz EMG + 50 Hz ACC) through StreamDetector.

One process, one core: every device's detector gets its next second in turn, as an ingest
worker interleaves live wearers, once device by device (``push_acc`` + ``push_emg`` +
``pop_series``) and once as a worker feeds a second of many wearers (``push_acc_many`` +
``push_emg_many``: one stacked front end for all of them); live wearers per core = chunks
per second of CPU.

Two populations of wearers:

- ``night`` (the headline): wearers anywhere in whole simulated nights, nine in ten in a
  ``typical`` night (a cramp or two, movements, turning over), one in ten in a
  ``frequent-cramps`` night.
- ``onset`` (the worst case): every wearer in the first minutes of a ``frequent-cramps``
  night, where movements and cramps keep most detectors busy most of the time.

    python -m bench.bench_stream [--quick] [--devices 200] [--seconds 60] [--night-hours 8]
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
ONSET_S = 600  # the ``onset`` population's stretch of night
FREQUENT_EVERY = 10  # one wearer in this many has a ``frequent-cramps`` night
WORKLOADS = ("night", "onset")
WORKLOAD_LABELS = {
    "night": "wearers anywhere in a night (1 in 10 frequent cramps)",
    "onset": "all falling asleep in a frequent-cramps night",
}
MODES = ("alone", "many")
MODE_LABELS = {"alone": "one device per call", "many": "a second of all devices per call"}

# (EMG, ACC, offset in seconds) of each device
Device = tuple[np.ndarray, np.ndarray, int]


def run(devices: int, seconds: int, seed: int, runs: int, night_s: int) -> dict[str, Any]:
    """Feed ``devices`` x ``seconds`` chunks of each population ``runs`` times; return cost
    figures (``night_s``: length of the simulated whole nights)."""
    populations = {
        "night": night_population(devices, seconds, seed, night_s),
        "onset": onset_population(devices, seconds, seed),
    }
    figures: dict[str, Any] = {
        "devices": devices,
        "seconds": seconds,
        "chunks": devices * seconds,
        "night_s": night_s,
    }
    per_run: dict[tuple[str, str], list[dict[str, float]]] = {}
    costs_ms: dict[tuple[str, str], list[float]] = {}
    for _ in range(max(1, runs)):
        for workload in WORKLOADS:  # alternated, so all see the same share of the noise
            for mode in MODES:
                run_figures, costs = one_run(mode, populations[workload], seconds)
                per_run.setdefault((workload, mode), []).append(run_figures)
                costs_ms[(workload, mode)] = costs
    for workload in WORKLOADS:
        entry: dict[str, Any] = {"label": WORKLOAD_LABELS[workload]}
        for mode in MODES:
            runs_of = per_run[(workload, mode)]
            costs = costs_ms[(workload, mode)]
            rate = float(np.median([r["chunks_per_cpu_s"] for r in runs_of]))
            entry[mode] = {
                "runs": runs_of,
                "chunks_per_core_s": rate,
                "live_wearers_per_core": rate,  # one chunk per wearer per second
                "p50_ms": percentile(costs, 50),
                "p99_ms": percentile(costs, 99),
                "max_ms": max(costs),
            }
        entry["many_over_alone"] = float(
            np.median(
                [
                    m["chunks_per_cpu_s"] / a["chunks_per_cpu_s"]
                    for m, a in zip(
                        per_run[(workload, "many")], per_run[(workload, "alone")], strict=True
                    )
                ]
            )
        )
        figures[workload] = entry
    # the headline: wearers anywhere in their night, fed as a worker feeds a second of many
    # wearers (ingest/worker.py)
    figures["live_wearers_per_core"] = figures["night"]["many"]["live_wearers_per_core"]
    figures["p99_ms"] = figures["night"]["many"]["p99_ms"]
    return figures


def _night(profile: str, seed: int, duration_s: int) -> tuple[np.ndarray, np.ndarray]:
    from simulator.night import simulate_night

    rec = simulate_night(
        np.random.default_rng(seed),
        profile,
        duration_s=duration_s,
        emg_rate_hz=EMG_RATE_HZ,
        acc_rate_hz=ACC_RATE_HZ,
    ).recording
    emg = np.ascontiguousarray(rec.emg_uv, dtype=np.float64)
    return emg, np.ascontiguousarray(rec.acc_g, dtype=np.float64)


def night_population(devices: int, seconds: int, seed: int, night_s: int) -> list[Device]:
    """Wearers at offsets spread over a whole ``typical`` night, every ``FREQUENT_EVERY``-th
    in a ``frequent-cramps`` night."""
    night_s = max(night_s, seconds + 60)
    typical = _night("typical", seed, night_s)
    frequent = _night("frequent-cramps", seed + 1, night_s)
    offsets = np.random.default_rng(seed + 2).integers(0, night_s - seconds, devices)
    return [
        (*(frequent if d % FREQUENT_EVERY == 0 else typical), int(offsets[d]))
        for d in range(devices)
    ]


def onset_population(devices: int, seconds: int, seed: int) -> list[Device]:
    """Every wearer in the first minutes of one ``frequent-cramps`` night, each at its own
    offset so their states differ."""
    source_s = max(seconds + 60, ONSET_S)
    emg, acc = _night("frequent-cramps", seed, source_s)
    offsets = np.random.default_rng(seed + 1).integers(0, source_s - seconds, devices)
    return [(emg, acc, int(offsets[d])) for d in range(devices)]


def one_run(
    mode: str, population: list[Device], seconds: int
) -> tuple[dict[str, float], list[float]]:
    """Every device's next second in turn (``alone``: ``push_acc`` + ``push_emg`` +
    ``pop_series`` per device; ``many``: ``push_acc_many`` and ``push_emg_many`` of all
    devices' second, then each ``pop_series``). Per-chunk costs: each device's own calls
    (alone) or each second's calls divided by the devices (many)."""
    from detection.stream import StreamDetector, push_acc_many, push_emg_many

    devices = len(population)
    e_n, a_n = int(EMG_RATE_HZ), int(ACC_RATE_HZ)
    detectors = [StreamDetector(f"bench-{d:05d}") for d in range(devices)]
    costs: list[float] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for s in range(seconds):
        t_us = 1_767_650_000_000_000 + s * 1_000_000
        if mode == "many":
            t0 = time.perf_counter_ns()
            acc_pushes = [
                (det, acc[(i + s) * a_n : (i + s + 1) * a_n], t_us, ACC_RATE_HZ)
                for det, (_, acc, i) in zip(detectors, population, strict=True)
            ]
            emg_pushes = [
                (det, emg[(i + s) * e_n : (i + s + 1) * e_n], t_us, EMG_RATE_HZ)
                for det, (emg, _, i) in zip(detectors, population, strict=True)
            ]
            for result in (*push_acc_many(acc_pushes), *push_emg_many(emg_pushes)):
                if not isinstance(result, list):
                    raise result
            for det in detectors:
                det.pop_series()
            costs += [(time.perf_counter_ns() - t0) / devices / 1e6] * devices
            continue
        for det, (emg, acc, i) in zip(detectors, population, strict=True):
            t0 = time.perf_counter_ns()
            det.push_acc(acc[(i + s) * a_n : (i + s + 1) * a_n], t_us, ACC_RATE_HZ)
            det.push_emg(emg[(i + s) * e_n : (i + s + 1) * e_n], t_us, EMG_RATE_HZ)
            det.pop_series()
            costs.append((time.perf_counter_ns() - t0) / 1e6)
    cpu_s = time.process_time() - cpu0
    wall_s = time.perf_counter() - wall0
    chunks = devices * seconds
    return {"cpu_s": cpu_s, "wall_s": wall_s, "chunks_per_cpu_s": chunks / cpu_s}, costs


def render(f: dict[str, Any]) -> str:
    rows = [
        (
            f[workload]["label"],
            MODE_LABELS[mode],
            f"{f['devices']} x {f['seconds']} s",
            f"{f[workload][mode]['live_wearers_per_core']:,.0f}",
            f"{f[workload][mode]['p50_ms']:.3f}",
            f"{f[workload][mode]['p99_ms']:.3f}",
            f"{f[workload][mode]['max_ms']:.2f}",
        )
        for workload in WORKLOADS
        for mode in MODES
    ]
    text = table(
        rows,
        (
            "wearers",
            "pushes",
            "devices x chunks",
            "live wearers (chunks/s) per core",
            "p50 ms/chunk",
            "p99 ms/chunk",
            "max ms",
        ),
    )
    ratios = ", ".join(
        f"{workload} {f[workload]['many_over_alone']:.2f}x" for workload in WORKLOADS
    )
    return text + f"\nmany / alone (median of paired runs): {ratios}"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--seconds", type=int, default=None)
    p.add_argument(
        "--night-hours", type=float, default=None, help="Length of the simulated whole nights."
    )
    args = p.parse_args(argv)
    devices = args.devices or (20 if args.quick else 200)
    seconds = args.seconds or (10 if args.quick else 60)
    night_s = round(3600 * (args.night_hours or (0.1 if args.quick else 8.0)))
    figures = run(devices, seconds, args.seed, 1 if args.quick else args.runs, night_s)
    print(render(figures))
    print(f"wrote {write_result(args.out, NAME, figures, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
