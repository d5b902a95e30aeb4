"""Bulk sync: one whole night published as sync frames -> episodes stored, seconds.

A wearable that was offline all night uploads it on the ``sync/`` topics as fast as the broker
acknowledges; the clock runs from the first frame published until every frame is
acknowledged by the worker and the night's episodes are in the store (SQLite).

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
from bench.pipeline import pipeline, wait_drained, wait_episodes_closed

NAME = "sync"


def run_once(nights: list[Any], workdir: Path) -> dict[str, Any]:
    from simulator.publisher import PublishOptions, publish_nights

    with pipeline(workdir, "sqlite", alerts=False, finish_after_s=1.0) as p:
        t0 = time.perf_counter()
        report = publish_nights(
            nights, p.broker_url, PublishOptions(speed=None, sync=True, frame_faults=False)
        )
        wait_drained(p.worker, report.frames_acked, timeout_s=900)
        # An episode still open at the end of the upload closes when the worker finishes the
        # device's detector (``finish_after_s`` of wall time after its last frame).
        wait_episodes_closed(p.worker, 60)
        seconds = time.perf_counter() - t0
        found = stored_vs_labelled(p.store, nights)
    return {
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
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            results.append(run_once(nights, Path(tmp)))
    seconds = [r["seconds"] for r in results]
    last = results[-1]
    rows = [
        (
            f"{hours:g} h",
            str(last["frames"]),
            f"{median(seconds):.1f}",
            f"{median([r['publish_s'] for r in results]):.1f}",
            f"{last['episodes']['stored']} / {last['episodes']['labelled']}",
        )
    ]
    print(
        table(rows, ("night", "frames", "median s to stored", "publish s", "episodes / labelled"))
    )
    payload = {"hours": hours, "runs": results, "median_s": median(seconds)}
    print(f"wrote {write_result(args.out, NAME, payload, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
