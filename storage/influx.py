"""The InfluxDB store: line protocol in, InfluxQL over ``/query`` out, a durable spool between.

Writes
    ``write_mode="v2"`` posts through influxdb-client's ``WriteApi`` to ``/api/v2/write``
    (InfluxDB 1.8+, 2.x, 3.x; for 1.x the bucket is ``db/rp`` and the token ``user:password``);
    ``write_mode="v1"`` posts to ``/write?db=…&rp=…&precision=u`` with httpx (InfluxDB 1.0-1.7).
    Each ``write_*`` call is confirmed by the server before it returns, in requests of at most
    ``batch_size`` lines, or, when the server cannot be reached, appended (fsync) to the local
    spool and replayed in order by a background thread every ``flush_interval_ms``. While the
    spool holds anything, new writes queue behind it, so the database sees them in order.
Reads
    InfluxQL over ``POST /query`` with ``epoch=u`` (served by 1.x, 2.x with a DBRP mapping and
    3.x). Flux is not used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.client.write_api import WriteOptions, WriteType
from influxdb_client.rest import ApiException

from detection.events import Episode, EpisodeEvent, QualityEvent, SeriesPoint
from storage import influx_schema as schema
from storage import validation
from storage.base import (
    DeadLetter,
    EpisodeQuery,
    HealthRecord,
    NightSummary,
    QueryError,
    SpoolHealth,
    Store,
    StoreError,
    StoreUnavailable,
    UnstorableValue,
    WeekSummary,
)
from storage.queries import (
    EPISODE_LOOKBACK_US,
    QUALITY_LOOKBACK_US,
    SECOND_US,
    select_episodes,
    select_quality,
    series_bin_us,
)
from storage.spool import Spool, SpoolRecord
from storage.summaries import (
    DAY_US,
    NOON_US,
    NightData,
    night_index,
    night_start_us,
    nights_starting_in,
    summarize_nights,
    summarize_weeks,
)
from storage.validation import DeviceRegistry

log = logging.getLogger(__name__)

WriteMode = Literal["v2", "v1"]
_STATEMENTS_PER_REQUEST: Final = 100
_SPOOL_BATCH_BYTES: Final = 8 * 1024 * 1024


class _Unreachable(Exception):
    """The database did not take a write for a reason outside the data (down, 5xx, auth)."""


class InfluxStore(Store):
    """Results in InfluxDB 1.x / 2.x / 3.x.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8086``.
    database : str
        1.x database; 2.x/3.x bucket (with a DBRP mapping of the same name for reads on 2.x).
    token : str, optional
        2.x/3.x token, or ``user:password`` for 1.x with authentication.
    org : str
        2.x organisation (ignored by 1.x and 3.x).
    write_mode : {"v2", "v1"}
        ``v2``: ``/api/v2/write`` via influxdb-client; ``v1``: ``/write`` (InfluxDB 1.0-1.7).
    retention_policy : str
        1.x retention policy for writes and reads ("" = the database default).
    batch_size : int
        Most lines per write request (direct writes and spool replay).
    flush_interval_ms : int
        While the database is unreachable: how often the spool replay is attempted, and how
        long direct writes skip trying (they go straight to the spool).
    spool_dir : Path, optional
        Durable spool for writes while the database is unreachable. Without one, such writes
        raise :class:`StoreUnavailable`.
    spool_max_mb : int
        Bound of the spool; a write that would pass it raises :class:`StoreUnavailable`.
    create_database : bool
        Run ``CREATE DATABASE`` (1.x) when the store opens.
    timeout_s : float
        Per-request timeout.
    device_registry : callable, optional
        ``is_registered(device_id) -> bool`` for "unknown device" query errors.
    clock_us : callable
        Wall clock in µs (spool ages); tests may pass their own.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        org: str = "crampwatch",
        write_mode: WriteMode = "v2",
        retention_policy: str = "",
        batch_size: int = 5000,
        flush_interval_ms: int = 1000,
        spool_dir: Path | None = None,
        spool_max_mb: int = 1024,
        create_database: bool = False,
        timeout_s: float = 10.0,
        device_registry: DeviceRegistry | None = None,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        if write_mode not in ("v1", "v2"):
            raise ValueError(f"write_mode must be 'v1' or 'v2', got {write_mode!r}")
        if not database:
            raise ValueError("database must not be empty")
        if batch_size < 1 or flush_interval_ms < 1:
            raise ValueError("batch_size and flush_interval_ms must be positive")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.write_mode: WriteMode = write_mode
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_ms / 1000
        self._org = org
        self._registry = device_registry
        self._clock_us = clock_us
        headers = {}
        auth: tuple[str, str] | None = None
        if token and write_mode == "v1" and ":" in token:
            user, _, password = token.partition(":")
            auth = (user, password)
        elif token:
            headers["Authorization"] = f"Token {token}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=auth,
            timeout=timeout_s,
            transport=httpx.HTTPTransport(retries=1),
        )
        self._client: InfluxDBClient | None = None
        if write_mode == "v2":
            # Synchronous WriteApi: a write returns once InfluxDB confirmed it (the batching
            # mode would return before that). Batching is done here (batch_size lines per
            # request); the client retries a failed request briefly (429/503, honouring
            # Retry-After) before the write is spooled.
            retry = WritesRetry(
                total=2,
                retry_interval=0.2,
                max_retry_delay=1.0,
                max_retry_time=max(1.0, 2 * timeout_s),
                exponential_base=2,
                allowed_methods=["POST"],
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
        if create_database:
            self.create_database()

    # -- setup -------------------------------------------------------------------------------

    def create_database(self) -> None:
        """``CREATE DATABASE`` (InfluxDB 1.x; a no-op when it exists)."""
        self._query([f"CREATE DATABASE {schema.quote_ident(self.database)}"], use_db=False)

    # -- delivery ----------------------------------------------------------------------------

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
            raise _Unreachable(message)
        bucket = self.database
        if self.retention_policy:
            bucket = f"{self.database}/{self.retention_policy}"
        try:
            self._write_api.write(
                bucket=bucket, org=self._org, record=body, write_precision=WritePrecision.US
            )
        except ApiException as exc:
            message = f"HTTP {exc.status} from /api/v2/write: {str(exc.body or exc.reason)[:500]}"
            if exc.status in (400, 422):
                raise UnstorableValue(message) from exc
            raise _Unreachable(message) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from exc

    def _send(self, lines: Sequence[str]) -> None:
        for start in range(0, len(lines), self.batch_size):
            self._post_lines(lines[start : start + self.batch_size])

    def _deliver(self, lines: list[str]) -> None:
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
                    self._mark_down(str(exc))
            if self._spool is None:
                raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {self._last_error}")
            self._spool.append("\n".join(lines).encode(), self._clock_us())

    def _mark_down(self, reason: str) -> None:
        if self._last_error != reason:
            log.warning("InfluxDB at %s unreachable, spooling writes: %s", self.url, reason)
        self._last_error = reason
        self._down_until = time.monotonic() + self.flush_interval_s

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
            self._mark_down(str(exc))
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
            while not self._stop.is_set():
                with self._write_lock:
                    if len(spool) == 0 or not self._replay_batch(spool):
                        break

    def spool_health(self) -> SpoolHealth:
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

    # -- writes ------------------------------------------------------------------------------

    def write_events(self, events: Sequence[EpisodeEvent]) -> None:
        self._deliver([schema.episode_line(e) for e in validation.latest_episodes(events)])

    def write_quality(self, events: Sequence[QualityEvent]) -> None:
        self._deliver([schema.quality_line(validation.check_quality(e)) for e in events])

    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        kept = validation.check_series(device_id, points)
        self._deliver([schema.series_line(device_id, p) for p in kept])

    def write_health(self, records: Sequence[HealthRecord]) -> None:
        self._deliver([schema.health_line(validation.check_health(r)) for r in records])

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self._deliver([schema.dead_letter_line(validation.check_dead_letter(d)) for d in letters])

    # -- InfluxQL ----------------------------------------------------------------------------

    def _query(self, statements: Sequence[str], use_db: bool = True) -> list[list[dict[str, Any]]]:
        """Run statements (batched per request); rows per statement, tags merged into rows."""
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(statements), _STATEMENTS_PER_REQUEST):
            chunk = statements[start : start + _STATEMENTS_PER_REQUEST]
            form = {"q": ";\n".join(chunk), "epoch": "u"}
            if use_db:
                form["db"] = self.database
                if self.retention_policy:
                    form["rp"] = self.retention_policy
            try:
                response = self._http.post("/query", data=form)
            except httpx.TransportError as exc:
                raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc}") from exc
            if response.status_code >= 500 or response.status_code in (401, 403, 429):
                raise StoreUnavailable(
                    f"InfluxDB /query answered HTTP {response.status_code}: {response.text[:300]}"
                )
            try:
                body = response.json()
            except ValueError as exc:
                raise StoreError(f"InfluxDB /query sent no JSON: {response.text[:300]}") from exc
            if "error" in body:
                raise StoreError(f"InfluxDB refused a query: {body['error']}")
            for result in body.get("results", []):
                if "error" in result:
                    if "database not found" in result["error"]:
                        results.append([])
                        continue
                    raise StoreError(f"InfluxDB refused a query: {result['error']}")
                rows: list[dict[str, Any]] = []
                for series in result.get("series", []):
                    tags = series.get("tags", {})
                    columns = series["columns"]
                    for values in series["values"]:
                        rows.append({**tags, **dict(zip(columns, values, strict=True))})
                results.append(rows)
        return results

    def _from(self, measurement: str) -> str:
        if self.retention_policy:
            return (
                f"{schema.quote_ident(self.database)}."
                f"{schema.quote_ident(self.retention_policy)}.{schema.quote_ident(measurement)}"
            )
        return schema.quote_ident(measurement)

    @staticmethod
    def _time_between(start_us: int, end_us: int) -> str:
        return f"time >= {max(0, start_us) * 1000} AND time < {end_us * 1000}"

    @staticmethod
    def _devices(device_ids: Sequence[str]) -> str:
        return "(" + " OR ".join(f"device_id = {schema.quote_str(d)}" for d in device_ids) + ")"

    def _episode_candidates(
        self, device_ids: Sequence[str], start_us: int, end_us: int
    ) -> list[Episode]:
        statement = (
            f"SELECT * FROM {self._from(schema.EPISODES)} WHERE {self._devices(device_ids)} "
            f"AND {self._time_between(start_us - EPISODE_LOOKBACK_US, end_us)}"
        )
        return [schema.episode_from_row(row) for row in self._query([statement])[0]]

    def _quality_candidates(
        self, device_ids: Sequence[str], start_us: int, end_us: int
    ) -> list[QualityEvent]:
        statement = (
            f"SELECT * FROM {self._from(schema.QUALITY)} WHERE {self._devices(device_ids)} "
            f"AND {self._time_between(start_us - QUALITY_LOOKBACK_US, end_us)}"
        )
        return [schema.quality_from_row(row) for row in self._query([statement])[0]]

    # -- reads -------------------------------------------------------------------------------

    def episodes(self, query: EpisodeQuery) -> list[Episode]:
        validation.check_episode_query(query, self._registry)
        devices = validation.check_devices(query.device_ids, None)
        candidates = self._episode_candidates(devices, query.start_us, query.end_us)
        return select_episodes(candidates, query)

    def series(
        self, device_id: str, start_us: int, end_us: int, max_points: int = 1000
    ) -> list[SeriesPoint]:
        validation.check_range(start_us, end_us)
        validation.check_devices((device_id,), self._registry)
        validation.check_max_points(max_points)
        width_us = series_bin_us(start_us, end_us, max_points)
        where = f"WHERE {self._devices((device_id,))} AND {self._time_between(start_us, end_us)}"
        source = self._from(schema.SERIES)
        if width_us == SECOND_US:
            statement = f"SELECT envelope_uv, floor_uv, activity_g, posture FROM {source} {where}"
        else:
            statement = (
                "SELECT mean(envelope_uv) AS envelope_uv, mean(floor_uv) AS floor_uv, "
                "mean(activity_g) AS activity_g, last(posture) AS posture "
                f"FROM {source} {where} "
                f"GROUP BY time({width_us}u, {start_us % width_us}u) fill(none)"
            )
        points = [schema.series_from_row(row) for row in self._query([statement])[0]]
        return sorted(points, key=lambda p: p.ts_us)

    def quality(self, device_id: str, start_us: int, end_us: int) -> list[QualityEvent]:
        validation.check_range(start_us, end_us)
        validation.check_devices((device_id,), self._registry)
        candidates = self._quality_candidates((device_id,), start_us, end_us)
        return select_quality(candidates, device_id, start_us, end_us)

    def latest_health(self, device_ids: Sequence[str] | None = None) -> list[HealthRecord]:
        where = ""
        if device_ids is not None:
            where = f"WHERE {self._devices(validation.check_devices(device_ids, self._registry))}"
        statement = (
            f"SELECT * FROM {self._from(schema.HEALTH)} {where} "
            "GROUP BY device_id, stream ORDER BY time DESC LIMIT 1"
        )
        records = [schema.health_from_row(row) for row in self._query([statement])[0]]
        return sorted(records, key=lambda r: (r.device_id, r.stream))

    def dead_letters(
        self, device_id: str | None, start_us: int, end_us: int, limit: int = 1000
    ) -> list[DeadLetter]:
        validation.check_range(start_us, end_us)
        validation.check_limit(limit)
        if device_id is not None and not isinstance(device_id, str):
            raise QueryError(f"device_id must be a string or None, got {device_id!r}")
        where = f"WHERE {self._time_between(start_us, end_us)}"
        if device_id is not None:
            where += f" AND device_id = {schema.quote_str(device_id)}"
        statement = (
            f"SELECT * FROM {self._from(schema.DEAD_LETTERS)} {where} "
            f"ORDER BY time DESC LIMIT {limit}"
        )
        letters = [schema.dead_letter_from_row(row) for row in self._query([statement])[0]]
        letters.sort(key=lambda d: (-d.arrival_us, d.reason))
        return letters[:limit]

    def _night_data(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int
    ) -> list[NightData]:
        source = self._from(schema.SERIES)
        offset_us = (NOON_US - utc_offset_s * SECOND_US) % DAY_US
        counts = self._query(
            [
                f"SELECT count(*) FROM {source} WHERE {self._devices(device_ids)} "
                f"AND {self._time_between(start_us, end_us)} "
                f"GROUP BY time({DAY_US}u, {offset_us}u), device_id fill(none)"
            ]
        )[0]
        nights: dict[tuple[str, int], int] = defaultdict(int)
        for row in counts:
            index = night_index(int(row["time"]), utc_offset_s)
            points = max(int(value or 0) for key, value in row.items() if key.startswith("count"))
            if points > 0:
                nights[(row["device_id"], index)] = int(row.get("count_envelope_uv") or 0)
        keys = sorted(nights)
        statements = []
        for device_id, index in keys:
            night_from_us = max(start_us, night_start_us(index, utc_offset_s))
            night_to_us = min(end_us, night_start_us(index + 1, utc_offset_s))
            where = (
                f"WHERE device_id = {schema.quote_str(device_id)} "
                f"AND {self._time_between(night_from_us, night_to_us)}"
            )
            statements.append(f"SELECT * FROM {source} {where} ORDER BY time ASC LIMIT 1")
            statements.append(f"SELECT * FROM {source} {where} ORDER BY time DESC LIMIT 1")
        edges = self._query(statements) if statements else []
        data = []
        for position, (device_id, index) in enumerate(keys):
            first_rows, last_rows = edges[2 * position], edges[2 * position + 1]
            if first_rows and last_rows:
                data.append(
                    NightData(
                        device_id,
                        index,
                        int(first_rows[0]["time"]),
                        int(last_rows[0]["time"]),
                        nights[(device_id, index)],
                    )
                )
        return data

    def night_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[NightSummary]:
        validation.check_range(start_us, end_us)
        validation.check_utc_offset(utc_offset_s)
        devices = validation.check_devices(device_ids, self._registry)
        nights = nights_starting_in(start_us, end_us, utc_offset_s)
        if not nights:
            return []
        first_us = night_start_us(nights[0], utc_offset_s)
        last_us = night_start_us(nights[-1] + 1, utc_offset_s)
        return summarize_nights(
            devices,
            start_us,
            end_us,
            utc_offset_s,
            self._episode_candidates(devices, first_us, last_us),
            self._night_data(devices, first_us, last_us, utc_offset_s),
            self._quality_candidates(devices, first_us, last_us),
        )

    def week_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[WeekSummary]:
        validation.check_range(start_us, end_us)
        validation.check_utc_offset(utc_offset_s)
        devices = validation.check_devices(device_ids, self._registry)
        nights = nights_starting_in(start_us, end_us, utc_offset_s)
        if not nights:
            return []
        episodes = self._episode_candidates(
            devices,
            night_start_us(nights[0], utc_offset_s),
            night_start_us(nights[-1] + 1, utc_offset_s),
        )
        return summarize_weeks(start_us, end_us, utc_offset_s, episodes)

    # -- lifecycle ---------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            response = self._http.get("/ping")
        except httpx.TransportError:
            return False
        return response.is_success

    def close(self) -> None:
        """Stop the replayer, try one last replay, release connections (the spool stays)."""
        self._stop.set()
        if self._replayer is not None:
            self._replayer.join(timeout=30)
        if self._spool is not None and len(self._spool) and time.monotonic() >= self._down_until:
            self.flush()
        self._http.close()
        if self._client is not None:
            self._client.close()
