"""Uploads of recorded nights (EDF+ or CSV), run through the detector as a bulk sync."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile, status

from api.convert import job_public
from api.deps import ReadAccess
from api.errors import invalid, not_found
from api.jobs import DetectionRequest, JobRunner, UploadedFile
from api.metrics import ApiMetrics
from api.models import JobPublic, Problem
from ingest.protocol import ACC_RATE_RANGE_HZ, EMG_RATE_RANGE_HZ
from storage.localtime import to_us

router = APIRouter(
    prefix="/v1/devices/{device_id}/recordings",
    tags=["uploads"],
    responses={401: {"model": Problem}, 404: {"model": Problem}},
)

EDF_MAGIC = b"0       "
_COPY_CHUNK = 1 << 20


def _sniff_suffix(head: bytes) -> str | None:
    """``.edf`` for EDF/EDF+, ``.csv`` for UTF-8 text, None for anything else."""
    if head.startswith(EDF_MAGIC):
        return ".edf"
    if not head or b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the end
            return None
    return ".csv"


def _refuse(request: Request, code: int, loc: tuple[str, ...], message: str, kind: str) -> NoReturn:
    metrics: ApiMetrics = request.app.state.metrics
    metrics.uploads.labels(kind).inc()
    if code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        raise invalid(loc, message, kind)
    raise HTTPException(code, message)


@router.post(
    "",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Upload a recorded night (EDF+ or CSV); detection runs as a job",
    responses={
        413: {"model": Problem, "description": "Larger than the upload limit."},
        415: {"model": Problem, "description": "Neither EDF/EDF+ nor CSV."},
        422: {"model": Problem, "description": "Truncated file, bad rate, no start time."},
    },
)
def upload_recording(
    request: Request,
    response: Response,
    subject: ReadAccess,
    file: Annotated[UploadFile, File(description="EDF/EDF+ or CSV recording of one night.")],
    start: Annotated[
        datetime | None,
        Form(description="Recording start (ISO 8601 with offset) when the file has none."),
    ] = None,
    emg_rate_hz: Annotated[
        float | None, Form(gt=0, le=100_000, description="EMG rate for CSV without a time column.")
    ] = None,
    acc_rate_hz: Annotated[
        float | None, Form(gt=0, le=100_000, description="ACC rate for CSV without a time column.")
    ] = None,
) -> JobPublic:
    from simulator.recording import RecordingError, read_recording

    device = subject.device
    if device is None:
        raise not_found()
    if start is not None and start.tzinfo is None:
        _refuse(request, 422, ("body", "start"), "needs a UTC offset", "value_error")
    max_bytes: int = request.app.state.max_upload_bytes
    runner: JobRunner = request.app.state.jobs
    # received next to the kept uploads, so that an accepted file is moved, not copied
    with tempfile.TemporaryDirectory(prefix="receiving-", dir=runner.upload_dir) as tmp:
        head = file.file.read(4096)
        suffix = _sniff_suffix(head)
        if suffix is None:
            _refuse(request, 415, ("body", "file"), "not an EDF/EDF+ or CSV file", "format")
        path = Path(tmp) / f"recording{suffix}"
        size = len(head)
        with path.open("wb") as out:
            out.write(head)
            while chunk := file.file.read(_COPY_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    _refuse(
                        request,
                        413,
                        ("body", "file"),
                        f"larger than {max_bytes} bytes",
                        "too_large",
                    )
                out.write(chunk)
        try:
            recording = read_recording(path, emg_rate_hz=emg_rate_hz, acc_rate_hz=acc_rate_hz)
        except RecordingError as exc:
            # The message names the file; show the client its own name, not a server path.
            message = str(exc).replace(str(path), file.filename or "upload")
            _refuse(request, 422, ("body", "file"), message, "recording_error")
        rates = (
            ("EMG", recording.emg_rate_hz, EMG_RATE_RANGE_HZ),
            ("accelerometer", recording.acc_rate_hz, ACC_RATE_RANGE_HZ),
        )
        for name, rate_hz, (low, high) in rates:
            if rate_hz is not None and not low <= rate_hz <= high:
                message = f"{name} rate {rate_hz:g} Hz outside {low:g}-{high:g} Hz"
                _refuse(request, 422, ("body", "file"), message, "bad_rate")
        begin = start or recording.start
        if begin is None:
            _refuse(
                request,
                422,
                ("body", "start"),
                "the file has no start time; send `start`",
                "missing",
            )
        job = runner.submit(
            recording,
            DetectionRequest(
                device.device_id,
                device.site,
                device.mvc_uv,
                to_us(begin),
                mains_hz=request.app.state.mains_hz,
            ),
            UploadedFile(path, emg_rate_hz, acc_rate_hz),
        )
    request.app.state.metrics.uploads.labels("accepted").inc()
    response.headers["Location"] = str(
        request.url_for("get_job", device_id=device.device_id, job_id=job.job_id)
    )
    return job_public(job)


@router.get("/{job_id}", response_model=JobPublic, summary="Progress and result of an upload")
def get_job(job_id: str, request: Request, subject: ReadAccess) -> JobPublic:
    runner: JobRunner = request.app.state.jobs
    job = runner.get(job_id)
    if job is None or subject.device is None or job.device_id != subject.device.device_id:
        raise not_found()
    return job_public(job)
