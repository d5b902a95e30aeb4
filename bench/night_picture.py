"""Draw one simulated night through the API's picture path (the figure in the docs).

    python -m bench.night_picture [--out docs/img/night.png] [--hours 7] [--seed 4]

Simulates a ``frequent-cramps`` night, runs the offline detector over it, stores the result in
a temporary SQLite store and renders the picture the API serves for that night.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from api.picture import DeviceNight, render_night
from detection.events import EpisodeEvent, EventKind
from detection.offline import detect_recording
from simulator.night import simulate_night
from storage.base import EpisodeQuery
from storage.localtime import night_window_us, to_us
from storage.sqlite import SqliteStore

DEVICE = "demo-left"
TIME_ZONE = "Europe/Paris"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img/night.png"))
    p.add_argument("--hours", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--scenario", default="frequent-cramps")
    args = p.parse_args(argv)
    start = datetime(2026, 11, 20, 21, 45, tzinfo=UTC)
    night = simulate_night(
        np.random.default_rng(args.seed),
        args.scenario,
        duration_s=args.hours * 3600,
        emg_rate_hz=500.0,
        acc_rate_hz=25.0,
        start_us=to_us(start),
        device_id=DEVICE,
        dtype=np.float32,
    )
    rec = night.recording
    result = detect_recording(
        rec.emg_uv,
        rec.emg_rate_hz,
        rec.acc_g,
        rec.acc_rate_hz,
        start_us=to_us(start),
        device_id=DEVICE,
        site="left_calf",
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "results.sqlite3")
        store.write_events([EpisodeEvent(EventKind.ENDED, e, e.onset_us) for e in result.episodes])
        store.write_quality(result.quality)
        store.write_series(DEVICE, result.series)
        start_us, end_us = night_window_us(start.date(), TIME_ZONE)
        panel = DeviceNight(
            DEVICE,
            "left_calf",
            store.series(DEVICE, start_us, end_us, max_points=4800),
            store.episodes(EpisodeQuery((DEVICE,), start_us, end_us)),
            store.quality(DEVICE, start_us, end_us),
        )
        image = render_night(
            [panel],
            start_us,
            end_us,
            TIME_ZONE,
            width_px=1200,
            height_px=500,
            title=f"Night of {start.date()} ({args.scenario}, simulated)",
        )
        store.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(image)
    print(f"{args.out}: {len(result.episodes)} episodes, {len(result.quality)} quality intervals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
