"""Durable delivery of line protocol to InfluxDB: confirmed by the server or spooled.

``write_mode="v2"`` posts through influxdb-client's ``WriteApi`` to ``/api/v2/write``
(InfluxDB 1.8+, 2.x, 3.x; for 1.x the bucket is ``db/rp`` and the token ``user:password``);
``write_mode="v1"`` posts to ``/write?db=…&rp=…&precision=u`` with httpx (InfluxDB 1.0-1.7).
:meth:`InfluxWriter.deliver` returns once the server confirmed the lines, in requests of at
most ``batch_size`` lines, or, when the server cannot take them, once they are appended (fsync)
to the local spool, which a background thread replays in order every ``flush_interval_ms``.
While the spool holds anything, new lines queue behind it, so the database sees write order.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import httpx
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.client.write_api import WriteOptions, WriteType
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from storage.base import SpoolHealth, StoreError, StoreUnavailable, UnstorableValue
from storage.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

WriteMode = Literal["v2", "v1"]
_SPOOL_BATCH_BYTES: Final = 8 * 1024 * 1024
_NO_RETRY_DEADLINE_S: Final = 10 * 365 * 86_400


class _Unreachable(Exception):
    """The database did not take a write for a reason outside the data (down, 5xx, auth)."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def parse_retry_after_s(value: str | None) -> float:
    """Seconds from an HTTP ``Retry-After`` header (delta seconds or a date), capped at 300."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(300.0, max(0.0, seconds))


class InfluxWriter:
    """Sends line protocol to one InfluxDB database, spooling it while the server is away.

    Parameters are those of :class:`storage.influx.InfluxStore` of the same names; ``http`` is
    the store's httpx client (base URL and credentials set) used by the ``v1`` mode.
    """

    def __init__(
        self,
        http: httpx.Client,
        database: str,
        *,
        token: str | None,
        org: str,
        write_mode: WriteMode,
        retention_policy: str,
        batch_size: int,
        flush_interval_ms: int,
        spool_dir: Path | None,
        spool_max_mb: int,
        timeout_s: float,
        clock_us: Callable[[], int],
    ) -> None:
        if write_mode not in ("v1", "v2"):
            raise ValueError(f"write_mode must be 'v1' or 'v2', got {write_mode!r}")
        if batch_size < 1 or flush_interval_ms < 1:
            raise ValueError("batch_size and flush_interval_ms must be positive")
        self._http = http
        self.url = str(http.base_url).rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.write_mode: WriteMode = write_mode
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_ms / 1000
        self._org = org
        self._clock_us = clock_us
        self._client: InfluxDBClient | None = None
        if write_mode == "v2":
            # Synchronous WriteApi: a write returns once InfluxDB confirmed it (the batching
            # mode would return before that). Batching is done here (batch_size lines per
            # request). The client retries a failed request twice within about a second
            # (connection errors, 429, 5xx), then the write is spooled and the spool honours
            # Retry-After. max_retry_time is effectively off: WritesRetry counts it from its
            # construction, not per request, so a real bound would stop all retries after it.
            retry = WritesRetry(
                total=2,
                retry_interval=0.2,
                max_retry_delay=1.0,
                max_retry_time=_NO_RETRY_DEADLINE_S,
                exponential_base=2,
                allowed_methods=["POST"],
                respect_retry_after_header=False,
            )
            self._client = InfluxDBClient(
                url=self.url,
                token=token or "",
                org=org,
                timeout=int(timeout_s * 1000),
                retries=retry,
            )
            self._write_api = self._client.write_api(
                write_options=WriteOptions(write_type=WriteType.synchronous, batch_size=batch_size)
            )
        self._write_lock = threading.Lock()
        self._down_until = 0.0
        self._last_error: str | None = None
        self._replayed = 0
        self._spool: Spool | None = None
        self._stop = threading.Event()
        self._replayer: threading.Thread | None = None
        if spool_dir is not None:
            self._spool = Spool(Path(spool_dir), spool_max_mb * 1024 * 1024)
            self._replayer = threading.Thread(
                target=self._replay_loop,
                args=(self._spool,),
                name="influx-spool-replay",
                daemon=True,
            )
            self._replayer.start()

    def _post_lines(self, lines: Sequence[str]) -> None:
        """One write request; raises _Unreachable or UnstorableValue."""
        body = "\n".join(lines)
        if self.write_mode == "v1":
            params = {"db": self.database, "precision": "u"}
            if self.retention_policy:
                params["rp"] = self.retention_policy
            try:
                response = self._http.post("/write", params=params, content=body.encode())
            except httpx.TransportError as exc:
                raise _Unreachable(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code == 204:
                return
            message = f"HTTP {response.status_code} from /write: {response.text.strip()[:500]}"
            if response.status_code == 400:
                raise UnstorableValue(message)
            raise _Unreachable(message, parse_retry_after_s(response.headers.get("Retry-After")))
        bucket = self.database
        if self.retention_policy:
            bucket = f"{self.database}/{self.retention_policy}"
        try:
            self._write_api.write(
                bucket=bucket,
                org=self._org,
                record=body,
                write_precision=WritePrecision.US,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            message = f"HTTP {exc.status} from /api/v2/write: {str(exc.body or exc.reason)[:500]}"
            if exc.status in (400, 422):
                raise UnstorableValue(message) from exc
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            raise _Unreachable(message, parse_retry_after_s(retry_after)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from exc

    def _send(self, lines: Sequence[str]) -> None:
        for start in range(0, len(lines), self.batch_size):
            self._post_lines(lines[start : start + self.batch_size])

    def deliver(self, lines: list[str]) -> None:
        """Confirmed by InfluxDB or durably spooled when this returns."""
        if not lines:
            return
        with self._write_lock:
            spooled = self._spool is not None and len(self._spool) > 0
            if not spooled and time.monotonic() >= self._down_until:
                try:
                    self._send(lines)
                    return
                except _Unreachable as exc:
                    self._mark_down(exc)
            if self._spool is None:
                raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {self._last_error}")
            try:
                self._spool.append("\n".join(lines).encode(), self._clock_us())
            except OSError as exc:
                raise StoreUnavailable(f"cannot append to the spool: {exc}") from exc

    def _mark_down(self, exc: _Unreachable) -> None:
        """Skip the server for the flush interval (or its Retry-After, when longer)."""
        reason = str(exc)
        if self._last_error != reason:
            log.warning("InfluxDB at %s unreachable, spooling writes: %s", self.url, reason)
        self._last_error = reason
        self._down_until = time.monotonic() + max(self.flush_interval_s, exc.retry_after_s)

    def flush(self) -> bool:
        """Replay the spool now; True when it is empty afterwards."""
        spool = self._spool
        if spool is None:
            return True
        while True:
            with self._write_lock:
                if len(spool) == 0:
                    return True
                if not self._replay_batch(spool):
                    return False

    def _replay_batch(self, spool: Spool) -> bool:
        """Deliver the oldest spooled batch (caller holds the write lock); False if down."""
        batch = spool.peek(self.batch_size, _SPOOL_BATCH_BYTES)
        if not batch:
            return True
        lines = [line for record in batch for line in record.payload.decode().split("\n")]
        try:
            self._send(lines)
        except _Unreachable as exc:
            self._mark_down(exc)
            return False
        except UnstorableValue as exc:
            self._set_aside(spool, batch, str(exc))
        spool.consume(batch)
        self._replayed += len(batch)
        self._down_until = 0.0
        return True

    @staticmethod
    def _set_aside(spool: Spool, batch: list[SpoolRecord], reason: str) -> None:
        """Keep spooled lines the database refuses in ``rejected/`` instead of retrying forever."""
        rejected = spool.directory / "rejected"
        rejected.mkdir(exist_ok=True)
        name = f"{batch[0].seq:012d}-{batch[0].offset:012d}.lp"
        (rejected / name).write_bytes(b"\n".join(record.payload for record in batch))
        log.error("InfluxDB refused %d spooled records (kept in %s): %s", len(batch), name, reason)

    def _replay_loop(self, spool: Spool) -> None:
        while not self._stop.wait(self.flush_interval_s):
            if len(spool) == 0 or time.monotonic() < self._down_until:
                continue
            try:
                while not self._stop.is_set():
                    with self._write_lock:
                        if len(spool) == 0 or not self._replay_batch(spool):
                            break
            except (OSError, StoreError) as exc:
                # A local problem (disk, damaged segment): keep the thread, retry later.
                log.error("spool replay from %s failed: %s", spool.directory, exc)
                self._last_error = f"spool replay: {exc}"
                self._down_until = time.monotonic() + self.flush_interval_s

    def health(self) -> SpoolHealth:
        """Size and age of the spool, replays so far, and the last delivery error."""
        if self._spool is None:
            return SpoolHealth(0, 0, 0, None, self._replayed, self._last_error)
        status = self._spool.status()
        age_s = None
        if status.oldest_appended_us is not None:
            age_s = max(0.0, (self._clock_us() - status.oldest_appended_us) / 1e6)
        return SpoolHealth(
            records=status.records,
            bytes=status.bytes,
            max_bytes=status.max_bytes,
            oldest_age_s=age_s,
            replayed_records=self._replayed,
            last_error=self._last_error,
        )

    def close(self) -> None:
        """Stop the replayer, try one last replay, release the client (the spool stays)."""
        self._stop.set()
        if self._replayer is not None:
            self._replayer.join(timeout=30)
        if self._spool is not None and len(self._spool) and time.monotonic() >= self._down_until:
            self.flush()
        if self._spool is not None:
            self._spool.close()
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
