"""End to end: simulated wearers at --speed max -> real mosquitto -> one IngestWorker -> store.

Once with the embedded SQLite store and once with a real ``influxd``; the live alert sink
publishes alerts to the same broker, where a subscriber times them. Figures: frames/s and
samples/s through the worker, the live wearers that throughput carries (1 kHz EMG + 50 Hz
ACC each), episodes stored vs labelled cramps, confirmation -> alert latency (arrival of the
confirming frame at the worker -> alert received by a subscriber), peak memory.

Then the many-wearers workload: many more wearers (400) with shorter nights (1.5 min; one
wearer in ten ``typical``, the others ``quiet``) through the same worker and SQLite, so that each batch holds a second or two of
hundreds of wearers, as live traffic does, where the 10-wearer workload gives the worker
long runs of few wearers to join.

    python -m bench.bench_e2e [--quick] [--devices 10] [--minutes 20] [--backends sqlite influx]
        [--many-devices 400] [--many-minutes 1.5] [--runs 3] [--shared-cores]

The worker has a CPU of its own: its threads (and the alert sink's client) on one CPU, the
publisher process, mosquitto and influxd on the others, so that the figures describe one
worker with one core rather than how the load generator and the worker share the machine.
The first store's 10-wearer workload is run again with everything free to run on every CPU
(``shared cores``; ``--shared-cores`` runs every workload so), as before 2026-12-05.

Each workload is run ``--runs`` times, each run on fresh servers and directories: throughput
figures are the medians of the runs (their range is kept in the JSON), alert latency
percentiles are over the alerts of all runs pooled.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import median, parser, percentile, table, write_result
from bench.pipeline import (
    child_publisher,
    pipeline,
    rss_peak_mb,
    wait_drained,
    wait_episodes_closed,
    worker_core,
)

NAME = "e2e"
EMG_RATE_HZ = 1000.0
ACC_RATE_HZ = 50.0
WEARER_SAMPLES_PER_S = EMG_RATE_HZ + ACC_RATE_HZ * 3
# The many-wearers nights: every tenth wearer ``typical`` (a cramp or two), the others
# ``quiet``. A simulated night has its cramps whatever its length, so short nights of one
# scenario would have every wearer cramping each minute, and the alert path would dominate.
LIVE_MIX = "quiet+typical"


def device_nights(
    devices: int, duration_s: float, seed: int, scenario: str = "frequent-cramps"
) -> list[Any]:
    """``devices`` simulated nights (by default ``frequent-cramps``: cramps to alert on;
    :data:`LIVE_MIX`: one wearer in ten ``typical``, the others ``quiet``)."""
    from simulator.fleet import fleet_night
    from simulator.publisher import DeviceNight

    nights = []
    for d in range(devices):
        name = scenario
        if scenario == LIVE_MIX:  # most wearers quiet, one in ten with a cramp or two
            name = "typical" if d % 10 == 0 else "quiet"
        sim = fleet_night(seed, d, 0, scenario=name, duration_s=duration_s)
        nights.append(DeviceNight(sim.recording, sim.labels))
    return nights


def thread_cpus() -> dict[str, list[int]]:
    """The CPUs each named thread of this process may run on (empty where unknown)."""
    placement: dict[str, list[int]] = {}
    for thread in threading.enumerate():
        cpus: list[int] = []
        if thread.native_id is not None and hasattr(os, "sched_getaffinity"):
            with contextlib.suppress(OSError):  # ended meanwhile
                cpus = sorted(os.sched_getaffinity(thread.native_id))
        placement[thread.name] = cpus
    return placement


def stored_vs_labelled(store: Any, nights: list[Any]) -> dict[str, Any]:
    """Match stored episodes with the labelled cramps of each night."""
    from detection.evaluation import Interval, score_night, summarize
    from storage.base import EpisodeQuery

    scores = []
    for night in nights:
        labels = night.labels
        end_us = labels.start_us + int(labels.duration_s * 1e6) + 3_600_000_000
        found = store.episodes(EpisodeQuery((labels.device_id,), labels.start_us, end_us))
        detected = [
            Interval(
                (e.onset_us - labels.start_us) / 1e6,
                ((e.offset_us or e.onset_us) - labels.start_us) / 1e6,
            )
            for e in found
        ]
        truth = [Interval(c.onset_s, c.offset_s) for c in labels.cramps]
        scores.append(score_night(truth, detected))
    s = summarize(scores)
    return {"labelled": s.n_truth, "stored": s.n_detected, "matched": s.true_positives}


def run_case(
    backend: str,
    nights: list[Any],
    workdir: Path,
    timeout_s: float = 600.0,
    *,
    seed: int,
    duration_s: float,
    scenario: str = "frequent-cramps",
    shared_cores: bool = False,
) -> dict[str, Any]:
    """Publish every night at max speed, from a process of its own, through one worker: on
    a CPU of its own, the publisher and the servers on the others (``shared_cores``: all of
    them on all CPUs)."""
    from simulator.publisher import PublishOptions

    frames = samples = 0
    for night in nights:
        rec = night.recording
        frames += int(np.ceil(rec.emg_uv.shape[0] / rec.emg_rate_hz))
        frames += int(np.ceil(rec.acc_g.shape[0] / rec.acc_rate_hz))
        samples += rec.emg_uv.size + rec.acc_g.size
    rss_before = rss_peak_mb()
    options = PublishOptions(speed=None, frame_faults=False)
    cores = None if shared_cores else worker_core()
    with (
        pipeline(workdir, backend, cores=cores) as p,  # type: ignore[arg-type]
        child_publisher(
            len(nights),
            duration_s,
            seed,
            p.broker_url,
            options,
            scenario,
            cpus=None if cores is None else cores[1],
        ) as publisher,
    ):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        publisher.go()
        report = publisher.report(timeout_s)
        drained_s = wait_drained(p.worker, report.frames_acked, timeout_s=timeout_s)
        elapsed_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
        placement = thread_cpus()
        # Detectors finish (open episodes close) finish_after_s after a device's last frame.
        wait_episodes_closed(p.worker, 60)
        p.timer.wait_quiet(quiet_s=1.0, timeout_s=15.0)  # the last alerts are in flight
        stats = p.worker.stats()
        gaps = sum(h.gaps for h in p.worker.health_snapshot())
        found = stored_vs_labelled(p.store, nights)
        latencies = p.timer.latencies_ms()
    frames_done = stats.frames_released
    return {
        "backend": backend,
        "scenario": scenario,
        "devices": len(nights),
        # the worker's CPUs and the others' (publisher, servers); None: all shared all CPUs
        "cores": None if cores is None else [sorted(cores[0]), sorted(cores[1])],
        "thread_cpus": placement,  # where the process's threads were allowed to run
        "frames_published": report.frames_acked,
        "frames_planned": frames,
        "frames_released": frames_done,
        "publish_s": report.elapsed_s,
        "elapsed_s": elapsed_s,
        "drain_after_publish_s": drained_s,
        "frames_per_s": frames_done / elapsed_s,
        "samples_per_s": samples / elapsed_s,
        "worker_cpu_s": cpu_s,  # the worker's process (worker, alert sink, alert timer)
        "live_wearers": samples / elapsed_s / WEARER_SAMPLES_PER_S,
        # what the worker's process spends per frame, and the wearers that one CPU second of it
        # carries: less sensitive than wall time to the publisher and the broker sharing the
        # machine's cores (its two threads share one interpreter lock, so about one core)
        "cpu_ms_per_frame": cpu_s / frames_done * 1000 if frames_done else float("nan"),
        "wearers_per_cpu_s": samples / cpu_s / WEARER_SAMPLES_PER_S,
        "episodes": found,
        "alerts_timed": len(latencies),
        "alert_p50_ms": percentile(latencies, 50),
        "alert_p99_ms": percentile(latencies, 99),
        "alert_latencies_ms": latencies,
        "rss_peak_mb": rss_peak_mb(),
        "rss_growth_mb": rss_peak_mb() - rss_before,
        "dead_letters": stats.dead_letters,
        # frames dropped because their stream had moved past them: at --speed max the 5 s
        # reorder window is 40 ms of wall time, which broker delivery order can exceed
        "late_frames": stats.late,
        "gaps_declared": gaps,
    }


MEDIAN_FIGURES = (
    "frames_per_s",
    "samples_per_s",
    "live_wearers",
    "elapsed_s",
    "publish_s",
    "worker_cpu_s",
    "cpu_ms_per_frame",
    "wearers_per_cpu_s",
)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One store's runs as one case: medians of the throughput figures, latency percentiles
    over every run's alerts, the worst of the counts that should be zero."""
    case = {k: v for k, v in runs[-1].items() if k != "alert_latencies_ms"}
    for key in MEDIAN_FIGURES:
        values = [r[key] for r in runs]
        case[key] = median(values)
        case[f"{key}_range"] = [min(values), max(values)]
    latencies = [ms for r in runs for ms in r["alert_latencies_ms"]]
    case["alerts_timed"] = len(latencies)
    case["alert_p50_ms"] = percentile(latencies, 50)
    case["alert_p99_ms"] = percentile(latencies, 99)
    for key in ("late_frames", "gaps_declared", "dead_letters"):
        case[key] = max(r[key] for r in runs)
    case["rss_peak_mb"] = max(r["rss_peak_mb"] for r in runs)
    case["episodes_per_run"] = [r["episodes"] for r in runs]
    case["runs"] = len(runs)
    return case


def _with_range(case: dict[str, Any], key: str) -> str:
    """A median figure, with the range of the runs when there were several."""
    low, high = case.get(f"{key}_range", (case[key], case[key]))
    text = f"{case[key]:,.0f}"
    return text if case.get("runs", 1) < 2 else f"{text} ({low:,.0f}-{high:,.0f})"


def render(cases: list[dict[str, Any]]) -> str:
    rows = [
        (
            c["backend"] + (" (shared cores)" if c["cores"] is None else ""),
            f"{c['devices']} x {c['minutes_per_device']:g} min {c['scenario']}, {c['runs']} runs",
            _with_range(c, "frames_per_s"),
            f"{c['samples_per_s']:,.0f}",
            _with_range(c, "live_wearers"),
            f"{c['cpu_ms_per_frame']:.3f}",
            _with_range(c, "wearers_per_cpu_s"),
            f"{c['episodes']['stored']} / {c['episodes']['labelled']} "
            f"({c['episodes']['matched']} matched)",
            f"{c['alert_p50_ms']:.0f} / {c['alert_p99_ms']:.0f} (n={c['alerts_timed']})",
            f"{c['rss_peak_mb']:.0f}",
        )
        for c in cases
    ]
    return table(
        rows,
        (
            "store",
            "wearers x night, runs",
            "frames/s",
            "samples/s",
            "live wearers/worker",
            "worker CPU ms/frame",
            "wearers per worker CPU s",
            "episodes stored / labelled",
            "alert p50 / p99 ms",
            "peak RSS MB",
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="Night length per device.")
    p.add_argument(
        "--backends",
        nargs="*",
        choices=("sqlite", "influx"),
        default=["sqlite", "influx"],
        help="Stores of the 10-wearer workload (none: only the many-wearers one).",
    )
    p.add_argument(
        "--many-devices",
        type=int,
        default=None,
        help="Wearers of the many-wearers workload (SQLite, quiet+typical nights); 0: skip it.",
    )
    p.add_argument("--many-minutes", type=float, default=None, help="Its night length.")
    p.add_argument("--timeout", type=float, default=600.0, help="Longest wait for the worker, s.")
    p.add_argument(
        "--shared-cores",
        action="store_true",
        help="Every workload with the worker, publisher and servers on all CPUs (by default "
        "the worker has a CPU of its own, and the first store's 10-wearer workload is also run "
        "shared, for comparison).",
    )
    p.set_defaults(runs=3)
    args = p.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    devices = args.devices or (2 if args.quick else 10)
    minutes = args.minutes or (3.0 if args.quick else 20.0)
    shared = args.shared_cores or worker_core() is None
    workloads = [
        (backend, devices, minutes, "frequent-cramps", shared) for backend in args.backends
    ]
    if args.backends and not shared:  # the same workload as everything but the worker shares
        workloads.insert(1, (args.backends[0], devices, minutes, "frequent-cramps", True))
    many = args.many_devices if args.many_devices is not None else (12 if args.quick else 400)
    many_minutes = args.many_minutes or (1.0 if args.quick else 1.5)
    if many:
        workloads.append(("sqlite", many, many_minutes, LIVE_MIX, shared))
    cases = []
    for backend, count, length, scenario, shared_cores in workloads:
        nights = device_nights(count, length * 60, args.seed, scenario)
        results = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix=f"bench-e2e-{backend}-") as tmp:
                results.append(
                    run_case(
                        backend,
                        nights,
                        Path(tmp),
                        args.timeout,
                        seed=args.seed,
                        duration_s=length * 60,
                        scenario=scenario,
                        shared_cores=shared_cores,
                    )
                )
        cases.append(combine(results) | {"per_run": results, "minutes_per_device": length})
    print(render(cases))
    payload = {"minutes_per_device": minutes, "cases": cases}
    print(f"wrote {write_result(args.out, NAME, payload, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
