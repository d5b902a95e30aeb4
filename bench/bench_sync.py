"""Bulk sync: one whole night published as sync frames -> episodes stored, seconds.

A wearable that was offline all night uploads it on the ``sync/`` topics as fast as the broker
acknowledges; the clock runs from the first frame published until every frame is
acknowledged by the worker and the night's episodes are in the store (SQLite). The wearable
is the simulator in a process of its own (it builds the night before the clock starts).
Timed with the simulator's sync frames (the longest the protocol allows, 30 s at 1 kHz)
and, for a device that uploads its live-sized 1 s frames, with those.

    python -m bench.bench_sync [--quick] [--hours 8]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_e2e import device_nights, stored_vs_labelled
from bench.common import median, parser, table, write_result
from bench.pipeline import child_publisher, pipeline, wait_drained, wait_episodes_closed

NAME = "sync"


def run_once(
    nights: list[Any], hours: float, seed: int, workdir: Path, frame_s: float | None
) -> dict[str, Any]:
    from simulator.publisher import PublishOptions

    options = PublishOptions(speed=None, sync=True, frame_faults=False, frame_s=frame_s)
    with (
        pipeline(workdir, "sqlite", alerts=False, finish_after_s=1.0) as p,
        child_publisher(len(nights), hours * 3600, seed, p.broker_url, options) as publisher,
    ):
        t0 = time.perf_counter()
        publisher.go()
        report = publisher.report(timeout_s=900)
        wait_drained(p.worker, report.frames_acked, timeout_s=900)
        # An episode still open at the end of the upload closes when the worker finishes the
        # device's detector (``finish_after_s`` of wall time after its last frame).
        wait_episodes_closed(p.worker, 60)
        seconds = time.perf_counter() - t0
        found = stored_vs_labelled(p.store, nights)
    return {
        "frame_s": frame_s,
        "seconds": seconds,
        "frames": report.frames_acked,
        "publish_s": report.elapsed_s,
        "episodes": found,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=None, help="Night length.")
    p.add_argument(
        "--sync-runs", type=int, default=1, help="Whole-night uploads timed (each takes minutes)."
    )
    args = p.parse_args(argv)
    hours = args.hours or (0.1 if args.quick else 8.0)
    runs = 1 if args.quick else args.sync_runs
    nights = device_nights(1, hours * 3600, args.seed)
    rows = []
    payload: dict[str, Any] = {"hours": hours, "cases": []}
    for frame_s in (None,) if args.quick else (None, 1.0):
        results = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
                results.append(run_once(nights, hours, args.seed, Path(tmp), frame_s))
        seconds = [r["seconds"] for r in results]
        last = results[-1]
        rows.append(
            (
                f"{hours:g} h",
                "sync (30 s)" if frame_s is None else f"{frame_s:g} s",
                str(last["frames"]),
                f"{median(seconds):.1f}",
                f"{median([r['publish_s'] for r in results]):.1f}",
                f"{last['episodes']['stored']} / {last['episodes']['labelled']}",
            )
        )
        payload["cases"].append({"frame_s": frame_s, "runs": results, "median_s": median(seconds)})
    payload["median_s"] = payload["cases"][0]["median_s"]  # the simulator's sync frames
    print(
        table(
            rows,
            (
                "night",
                "frames of",
                "frames",
                "median s to stored",
                "publish s",
                "episodes / labelled",
            ),
        )
    )
    print(f"wrote {write_result(args.out, NAME, payload, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
