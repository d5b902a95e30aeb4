"""Background jobs that run an uploaded recording through the detector into the store."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from detection.events import EpisodeEvent, EventKind
from storage.base import Store, StoreError
from storage.metadata.db import utc_now

if TYPE_CHECKING:
    from simulator.recording import Recording

log = logging.getLogger(__name__)
JobState = Literal["queued", "running", "done", "failed"]
SERIES_BATCH = 5000


@dataclass(frozen=True)
class Job:
    """A snapshot of one upload job."""

    job_id: str
    device_id: str
    state: JobState
    progress: float
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    episode_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectionRequest:
    """What the detector needs besides the recording."""

    device_id: str
    site: str
    mvc_uv: float | None
    start_us: int
    mains_hz: str = "auto"


class JobRunner:
    """Runs uploads one at a time (detection is CPU-bound) and remembers recent jobs.

    Parameters
    ----------
    store : Store
        Where episodes, quality intervals and 1 Hz series go, after detection has finished.
    max_jobs : int
        How many finished jobs are remembered for ``GET``.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_jobs: int = 1000,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")

    def submit(self, recording: Recording, request: DetectionRequest) -> Job:
        """Queue a recording; returns the queued job."""
        job = Job(f"job_{uuid.uuid4().hex[:16]}", request.device_id, "queued", 0.0, self._clock())
        self._put(job)
        self._executor.submit(self._run, job.job_id, recording, request)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job's latest snapshot or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        """Wait for the running job, drop queued ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _put(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.job_id] = job
            self._jobs.move_to_end(job.job_id)
            while len(self._jobs) > self._max_jobs:
                self._jobs.popitem(last=False)

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(job, **changes)  # type: ignore[arg-type]

    def _run(self, job_id: str, recording: Recording, request: DetectionRequest) -> None:
        from detection import DetectorError
        from detection.offline import detect_recording

        self._update(job_id, state="running", progress=0.05)
        try:
            result = detect_recording(
                recording.emg_uv,
                recording.emg_rate_hz,
                recording.acc_g,
                recording.acc_rate_hz,
                start_us=request.start_us,
                device_id=request.device_id,
                site=request.site,
                mvc_uv=request.mvc_uv,
                mains_hz=request.mains_hz,
            )
            self._update(job_id, progress=0.8)
            # Everything is computed before the first write: a bad file stores nothing.
            events = [
                EpisodeEvent(EventKind.ENDED, e, e.offset_us if e.offset_us else e.onset_us)
                for e in result.episodes
            ]
            self._store.write_events(events)
            self._store.write_quality(result.quality)
            for i in range(0, len(result.series), SERIES_BATCH):
                self._store.write_series(request.device_id, result.series[i : i + SERIES_BATCH])
        except (DetectorError, StoreError) as exc:
            self._update(
                job_id,
                state="failed",
                error=f"{type(exc).__name__}: {exc}",
                finished_at=self._clock(),
            )
            return
        except Exception:
            # The job's edge: record the failure instead of leaving it "running" forever.
            log.exception("upload job %s failed", job_id)
            self._update(job_id, state="failed", error="internal error", finished_at=self._clock())
            return
        self._update(
            job_id,
            state="done",
            progress=1.0,
            finished_at=self._clock(),
            episode_ids=tuple(e.episode_id for e in result.episodes),
        )
