"""Background jobs that run an uploaded recording through the detector into the store.

A job is durable from the moment its upload is accepted: its record lives in the metadata
database (table ``upload_jobs``, its own :class:`JobBase` metadata, as the alert tables share
that engine) and its file in the API's upload directory until the job has finished. An API
process that stops or crashes with jobs queued or running runs them again when it starts
(:meth:`JobRunner.resume`); that is safe because every store write is an idempotent upsert
(episodes by id, series by second). Any API process on the same metadata database answers
``GET`` for any job.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import JSON, BigInteger, Engine, Float, MetaData, String, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from detection.events import EpisodeEvent, EventKind
from storage.base import Store, StoreError
from storage.localtime import from_us, to_us
from storage.metadata.db import utc_now

if TYPE_CHECKING:
    from simulator.recording import Recording

log = logging.getLogger(__name__)
JobState = Literal["queued", "running", "done", "failed"]
UNFINISHED: tuple[JobState, ...] = ("queued", "running")
SERIES_BATCH = 5000
ERROR_LENGTH = 500
STALE_RECEIPT_S = 3600.0


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


@dataclass(frozen=True)
class UploadedFile:
    """An accepted upload on disk, and how to read it again (the rates given with a CSV)."""

    path: Path
    emg_rate_hz: float | None = None
    acc_rate_hz: float | None = None


class JobBase(DeclarativeBase):
    """Declarative base of the job table (own :class:`MetaData`)."""

    metadata = MetaData()


class UploadJobRow(JobBase):
    """One upload job; ``file_name`` (in the upload directory) until the job has finished."""

    __tablename__ = "upload_jobs"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float)
    created_us: Mapped[int] = mapped_column(BigInteger, index=True)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH), nullable=True)
    episode_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    file_name: Mapped[str] = mapped_column(String(255))
    emg_rate_hz: Mapped[float | None] = mapped_column(Float, nullable=True)
    acc_rate_hz: Mapped[float | None] = mapped_column(Float, nullable=True)
    site: Mapped[str] = mapped_column(String(64))
    mvc_uv: Mapped[float | None] = mapped_column(Float, nullable=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    mains_hz: Mapped[str] = mapped_column(String(16))


class JobRunner:
    """Runs uploads one at a time (detection is CPU-bound), with their records in the database.

    Parameters
    ----------
    store : Store
        Where episodes, quality intervals and 1 Hz series go, after detection has finished.
    engine : Engine
        The metadata database (the ``upload_jobs`` table is created if missing).
    upload_dir : Path, optional
        Where accepted uploads wait for their job. None: a temporary directory removed by
        :meth:`shutdown`, so jobs cut short by a stop are not run again.
    max_jobs : int
        How many finished jobs are kept for ``GET`` (the oldest are deleted first).
    clock : callable
        Current timezone-aware UTC time.
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        upload_dir: Path | None = None,
        *,
        max_jobs: int = 1000,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._engine = engine
        self._own_dir = upload_dir is None
        self.upload_dir = (
            Path(tempfile.mkdtemp(prefix="crampwatch-jobs-")) if upload_dir is None else upload_dir
        )
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._max_jobs = max_jobs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        JobBase.metadata.create_all(engine, checkfirst=True)

    def submit(self, recording: Recording, request: DetectionRequest, upload: UploadedFile) -> Job:
        """Keep the upload's file for the job (it is moved into the upload directory), record
        the job as queued and queue it; returns the queued job."""
        job_id = f"job_{uuid.uuid4().hex[:16]}"
        file_name = f"{job_id}{upload.path.suffix}"
        kept = UploadedFile(self.upload_dir / file_name, upload.emg_rate_hz, upload.acc_rate_hz)
        shutil.move(upload.path, kept.path)
        now_us = to_us(self._clock())
        row = UploadJobRow(
            job_id=job_id,
            device_id=request.device_id,
            state="queued",
            progress=0.0,
            created_us=now_us,
            episode_ids=[],
            file_name=file_name,
            emg_rate_hz=upload.emg_rate_hz,
            acc_rate_hz=upload.acc_rate_hz,
            site=request.site,
            mvc_uv=request.mvc_uv,
            start_us=request.start_us,
            mains_hz=request.mains_hz,
        )
        with Session(self._engine) as session, session.begin():
            session.add(row)
            job = _job(row)
        self._executor.submit(self._run, job_id, recording, request, kept)
        return job

    def resume(self) -> list[str]:
        """Queue again the jobs that a stopped process left queued or running, when their file
        is in this runner's upload directory; returns their ids. (With several API processes
        on one database and one upload directory, a process that restarts also runs again the
        jobs another one is running: the same writes, so the same results.)"""
        if self._own_dir:
            return []
        self._discard_stale_receipts()
        with Session(self._engine) as session:
            rows = session.scalars(
                select(UploadJobRow)
                .where(UploadJobRow.state.in_(UNFINISHED))
                .order_by(UploadJobRow.created_us)
            ).all()
            kept = [
                (row.job_id, _request(row), _kept(row, self.upload_dir))
                for row in rows
                if (self.upload_dir / row.file_name).exists()
            ]
        for job_id, request, upload in kept:
            self._update(job_id, state="queued", progress=0.0)
            self._executor.submit(self._run, job_id, None, request, upload)
        if kept:
            log.info("running %d upload job(s) again after a restart", len(kept))
        return [job_id for job_id, _, _ in kept]

    def _discard_stale_receipts(self) -> None:
        """Delete uploads cut short while being received (a process stopped mid-upload):
        those untouched for :data:`STALE_RECEIPT_S` (another process sharing the directory
        may be receiving one right now)."""
        now = time.time()
        for partial in self.upload_dir.glob("receiving-*"):
            try:
                touched = max(p.stat().st_mtime for p in (partial, *partial.iterdir()))
            except OSError:  # gone meanwhile
                continue
            if now - touched > STALE_RECEIPT_S:
                shutil.rmtree(partial, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        """The job's latest snapshot or None."""
        with Session(self._engine) as session:
            row = session.get(UploadJobRow, job_id)
            return None if row is None else _job(row)

    def shutdown(self) -> None:
        """Wait for the running job; queued ones stay queued, to run after the next start
        (with a temporary upload directory, which goes now, they fail instead)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._own_dir:
            names = [p.name for p in self.upload_dir.glob("job_*")]
            with Session(self._engine) as session, session.begin():
                session.execute(
                    update(UploadJobRow)
                    .where(UploadJobRow.state.in_(UNFINISHED), UploadJobRow.file_name.in_(names))
                    .values(
                        state="failed",
                        error="the API stopped before the job ran: upload the file again",
                        finished_us=to_us(self._clock()),
                    )
                )
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    def _update(self, job_id: str, **changes: Any) -> None:
        with Session(self._engine) as session, session.begin():
            _set(session, job_id, changes)

    def _finish(self, job_id: str, upload: UploadedFile, **changes: Any) -> None:
        """Record the job's end and delete the oldest finished jobs beyond ``max_jobs`` (one
        transaction), then the job's file."""
        with Session(self._engine) as session, session.begin():
            _set(session, job_id, {"finished_us": to_us(self._clock()), **changes})
            finished = select(UploadJobRow.job_id).where(UploadJobRow.state.not_in(UNFINISHED))
            keep = finished.order_by(UploadJobRow.created_us.desc()).limit(self._max_jobs)
            session.execute(
                delete(UploadJobRow).where(
                    UploadJobRow.state.not_in(UNFINISHED),
                    UploadJobRow.job_id.not_in(keep.scalar_subquery()),
                )
            )
        upload.path.unlink(missing_ok=True)

    def _run(
        self,
        job_id: str,
        recording: Recording | None,
        request: DetectionRequest,
        upload: UploadedFile,
    ) -> None:
        from detection import DetectorError
        from detection.offline import detect_recording
        from simulator.recording import RecordingError, read_recording

        self._update(job_id, state="running", progress=0.05)
        try:
            if recording is None:  # run again after a restart: read the kept file
                recording = read_recording(
                    upload.path, emg_rate_hz=upload.emg_rate_hz, acc_rate_hz=upload.acc_rate_hz
                )
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
        except (DetectorError, StoreError, RecordingError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]
            self._finish(job_id, upload, state="failed", error=error)
            return
        except Exception:
            # The job's edge: record the failure instead of leaving it "running" forever.
            log.exception("upload job %s failed", job_id)
            self._finish(job_id, upload, state="failed", error="internal error")
            return
        self._finish(
            job_id,
            upload,
            state="done",
            progress=1.0,
            episode_ids=[e.episode_id for e in result.episodes],
        )


def _job(row: UploadJobRow) -> Job:
    return Job(
        job_id=row.job_id,
        device_id=row.device_id,
        state=cast(JobState, row.state),
        progress=row.progress,
        created_at=from_us(row.created_us),
        finished_at=None if row.finished_us is None else from_us(row.finished_us),
        error=row.error,
        episode_ids=tuple(row.episode_ids or ()),
    )


def _request(row: UploadJobRow) -> DetectionRequest:
    return DetectionRequest(row.device_id, row.site, row.mvc_uv, row.start_us, row.mains_hz)


def _kept(row: UploadJobRow, upload_dir: Path) -> UploadedFile:
    return UploadedFile(upload_dir / row.file_name, row.emg_rate_hz, row.acc_rate_hz)


def _set(session: Session, job_id: str, changes: dict[str, Any]) -> None:
    session.execute(update(UploadJobRow).where(UploadJobRow.job_id == job_id).values(**changes))
