"""The InfluxDB store: line protocol in, InfluxQL over ``/query`` out, a durable spool between.

Writes go through :class:`storage.influx_writer.InfluxWriter` (``/api/v2/write`` via
influxdb-client, or ``/write`` for InfluxDB 1.0-1.7), confirmed by the server or spooled when a
``write_*`` returns. Reads are InfluxQL over ``POST /query`` with ``epoch=u`` (served by 1.x,
2.x with a DBRP mapping, and 3.x); Flux is not used. Schema: :mod:`storage.influx_schema`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx

from detection.events import Episode, EpisodeEvent, QualityEvent, SeriesPoint
from storage import influx_schema as schema
from storage import validation
from storage.base import (
    DeadLetter,
    EpisodeQuery,
    HealthRecord,
    QueryError,
    SpoolHealth,
    StoreError,
    StoreUnavailable,
    UnstorableValue,
)
from storage.influx_writer import InfluxWriter, WriteMode
from storage.queries import (
    QUALITY_LOOKBACK_US,
    SECOND_US,
    episode_onset_floor_us,
    select_episodes,
    select_quality,
    series_bin_us,
)
from storage.summaries import (
    DAY_US,
    NOON_US,
    NightData,
    night_index,
    night_start_us,
)
from storage.summarizing import SummarizingStore
from storage.validation import DeviceRegistry

log = logging.getLogger(__name__)

_STATEMENTS_PER_REQUEST: Final = 100


class InfluxStore(SummarizingStore):
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
        if not database:
            raise ValueError("database must not be empty")
        self._local = threading.local()  # the thread's open grouped() block, if any
        self.refused_in_groups = 0
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self._registry = device_registry
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
        self._writer = InfluxWriter(
            self._http,
            database,
            token=token,
            org=org,
            write_mode=write_mode,
            retention_policy=retention_policy,
            batch_size=batch_size,
            flush_interval_ms=flush_interval_ms,
            spool_dir=spool_dir,
            spool_max_mb=spool_max_mb,
            timeout_s=timeout_s,
            clock_us=clock_us,
        )
        if create_database:
            self.create_database()

    # -- setup -------------------------------------------------------------------------------

    def create_database(self) -> None:
        """``CREATE DATABASE`` (InfluxDB 1.x; a no-op when it exists)."""
        self._query([f"CREATE DATABASE {schema.quote_ident(self.database)}"], use_db=False)

    # -- delivery ----------------------------------------------------------------------------

    # -- writes ------------------------------------------------------------------------------

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Send the calling thread's ``write_*`` lines of the block together when it ends: as
        few requests as ``batch_size`` allows, confirmed or spooled when the block returns;
        nothing when the block raises. Each call is still checked when it is made. Should the
        server refuse the joined lines (HTTP 400), they are sent again call by call and only
        the calls it refuses are dropped, each logged (:attr:`refused_in_groups` counts them).
        """
        if getattr(self._local, "group", None) is not None:
            raise RuntimeError("grouped() blocks do not nest")
        group: list[list[str]] = []
        self._local.group = group
        try:
            yield
        finally:
            self._local.group = None
        try:
            self._writer.deliver([line for lines in group for line in lines])
        except UnstorableValue:
            for lines in group:
                try:
                    self._writer.deliver(lines)
                except UnstorableValue as exc:
                    self.refused_in_groups += 1
                    log.error("InfluxDB refused %d lines of a grouped write: %s", len(lines), exc)

    def _deliver(self, lines: list[str]) -> None:
        group: list[list[str]] | None = getattr(self._local, "group", None)
        if group is None:
            self._writer.deliver(lines)
        elif lines:
            group.append(lines)

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
        self, device_ids: Sequence[str], from_us: int, end_us: int
    ) -> list[Episode]:
        """Episodes of the devices with onset in ``[from_us, end_us)``."""
        statement = (
            f"SELECT * FROM {self._from(schema.EPISODES)} WHERE {self._devices(device_ids)} "
            f"AND {self._time_between(from_us, end_us)}"
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
        candidates = self._episode_candidates(devices, episode_onset_floor_us(query), query.end_us)
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
        source = self._from(schema.DEAD_LETTERS)
        device = "" if device_id is None else f" AND device_id = {schema.quote_str(device_id)}"
        statement = (
            f"SELECT * FROM {source} WHERE {self._time_between(start_us, end_us)}{device} "
            f"ORDER BY time DESC LIMIT {limit}"
        )
        rows = self._query([statement])[0]
        if len(rows) == limit:
            # Letters of other reasons at the oldest time returned may have been cut
            # arbitrarily: fetch that instant whole so the order (time, reason) decides.
            edge_ns = min(int(row["time"]) for row in rows) * 1000
            rows += self._query([f"SELECT * FROM {source} WHERE time = {edge_ns}{device}"])[0]
        unique = {(d.arrival_us, d.reason): d for d in map(schema.dead_letter_from_row, rows)}
        letters = sorted(unique.values(), key=lambda d: (-d.arrival_us, d.reason))
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

    # -- lifecycle ---------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            response = self._http.get("/ping")
        except httpx.TransportError:
            return False
        return response.is_success

    def spool_health(self) -> SpoolHealth:
        return self._writer.health()

    def flush(self) -> bool:
        """Replay the spool now; True when it is empty afterwards."""
        return self._writer.flush()

    def close(self) -> None:
        """Stop the spool replay (what is left stays on disk) and release connections."""
        self._writer.close()
        self._http.close()
