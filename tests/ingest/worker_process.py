"""An ingest worker as its own process, for the kill -9 test: the test detector and store,
stats written to ``stats-{pid}.json`` in the data dir every 50 ms.

Run: ``python -m tests.ingest.worker_process --port P --data-dir D --client-id C``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from detection.events import SeriesPoint
from ingest.intake import BrokerConfig
from ingest.worker import IngestWorker
from tests.ingest.support import BinDetectorFactory, ResultStore


class SlowStore(ResultStore):
    """Writes series with a delay, so a kill lands mid-night."""

    delay_s = 0.0

    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        time.sleep(self.delay_s)
        super().write_series(device_id, points)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--write-delay-ms", type=float, default=0.0)
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args()
    store = SlowStore(args.data_dir / "results.sqlite")
    store.delay_s = args.write_delay_ms / 1000
    worker = IngestWorker(
        BrokerConfig("127.0.0.1", args.port, args.client_id),
        store,
        BinDetectorFactory(),
        args.data_dir,
        idle_flush_s=1.0,
        finish_after_s=3.0,
        health_interval_s=0.2,
        max_batch=args.max_batch,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    worker.start()
    stats_path = args.data_dir / f"stats-{os.getpid()}.json"
    while not done.wait(0.05):
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(worker.stats())))
        tmp.replace(stats_path)
    worker.stop()
    store.close()


if __name__ == "__main__":
    main()
