"""``crampwatch ingest``: run one ingest worker until interrupted."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import typer

from crampwatch.commands._common import (
    ConfigOption,
    configure_logging,
    fail,
    settings_or_exit,
)
from crampwatch.wiring import (  # re-exported for callers of this module
    WiringError,
    build_worker,
    open_configured_store,
)

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 10.0


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        config: ConfigOption = None,
        worker_index: int | None = typer.Option(
            None, "--worker-index", help="Override CRAMPWATCH_INGEST_WORKER_INDEX."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Override CRAMPWATCH_DATA_DIR."
        ),
    ) -> None:
        """Run one ingest worker: MQTT frames in, episodes, series and health to the store.

        It sends no live alerts; `crampwatch serve --no-api` runs a worker with them."""
        settings = settings_or_exit(config)
        if data_dir is not None:
            settings.general.data_dir = data_dir
        if worker_index is not None and not 0 <= worker_index < settings.ingest.worker_count:
            fail(f"--worker-index {worker_index} is not in 0..{settings.ingest.worker_count - 1}")
        configure_logging(settings)
        try:
            store = open_configured_store(settings)
            worker = build_worker(settings, store, worker_index=worker_index)
        except (WiringError, ValueError, OSError) as exc:
            fail(str(exc))
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        worker.start()
        log.info("ingest worker %d/%d started", worker.worker_index, worker.worker_count)
        next_progress = time.monotonic() + PROGRESS_INTERVAL_S
        while not done.wait(1.0):
            if worker.failure is not None:
                worker.stop()
                store.close()
                fail(f"ingest processing stopped: {worker.failure}", code=1)
            if time.monotonic() >= next_progress:
                log.info("ingest progress: %s", json.dumps(asdict(worker.stats())))
                next_progress += PROGRESS_INTERVAL_S
        worker.stop()
        log.info("ingest stopped: %s", json.dumps(asdict(worker.stats())))
        store.close()
