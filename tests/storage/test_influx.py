"""InfluxDB adapter specifics: the v2 write path on the wire, the spool, outages, throughput."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from detection.events import EpisodeEvent, EventKind, SeriesPoint
from storage.base import EpisodeQuery, Store, StoreUnavailable, UnstorableValue
from storage.influx import InfluxStore
from storage.influx_writer import parse_retry_after_s
from tests.servers import Influxd, free_port, wait_for
from tests.storage.conftest import NIGHT_START_US, SECOND_US, episode, make_night, open_influx

T0 = NIGHT_START_US


@dataclass
class Captured:
    """One request the fake write endpoint received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class WriteEndpoint:
    """A real local HTTP server that answers writes with the next queued status code."""

    server: ThreadingHTTPServer
    requests: list[Captured] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def endpoint() -> Iterator[WriteEndpoint]:
    state: WriteEndpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            split = urlsplit(self.path)
            state.requests.append(
                Captured("POST", split.path, parse_qs(split.query), dict(self.headers), body)
            )
            if split.path == "/query":
                status, payload = 200, b'{"results":[{"statement_id":0}]}'
            else:
                status = state.statuses.pop(0) if state.statuses else 204
                payload = b"" if status == 204 else b'{"code":"x","message":"refused"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = WriteEndpoint(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def v2_store(url: str, spool_dir: Path | None, **options: object) -> InfluxStore:
    return InfluxStore(
        url,
        "crampwatch",
        token="reader:s3cret",
        org="clinic-a",
        write_mode="v2",
        retention_policy="autogen",
        spool_dir=spool_dir,
        flush_interval_ms=50,
        timeout_s=2.0,
        **options,  # type: ignore[arg-type]
    )


def test_v2_write_path_on_the_wire(endpoint: WriteEndpoint, tmp_path: Path) -> None:
    store = v2_store(endpoint.url, tmp_path / "spool", batch_size=2)
    points = [
        SeriesPoint(T0, 10.5, 2.0, 0.25, "left"),
        SeriesPoint(T0 + SECOND_US, None, None, 0.125, None),
        SeriesPoint(T0 + 2 * SECOND_US, 1e-7, 3.0, None, "supine"),
    ]
    store.write_series("dev-1", points)
    cramp = episode("dev-1", T0, 12.5, peak=7.25, got_up=True)
    store.write_events([EpisodeEvent(EventKind.ENDED, cramp, T0)])
    store.close()
    assert len(endpoint.requests) == 3  # batch_size=2 splits the three series lines
    for request in endpoint.requests:
        assert request.path == "/api/v2/write"
        assert request.query == {
            "org": ["clinic-a"],
            "bucket": ["crampwatch/autogen"],
            "precision": ["us"],
        }
        assert request.headers["Authorization"] == "Token reader:s3cret"
        assert request.headers["Content-Type"].startswith("text/plain")
    body = b"\n".join(r.body for r in endpoint.requests).decode()
    assert body.split("\n") == [
        f'series,device_id=dev-1 activity_g=0.25,envelope_uv=10.5,floor_uv=2,posture="left" {T0}',
        f"series,device_id=dev-1 activity_g=0.125 {T0 + SECOND_US}",
        f'series,device_id=dev-1 envelope_uv=1e-07,floor_uv=3,posture="supine" {T0 + 2 * SECOND_US}',
        f"episodes,device_id=dev-1,site=calf confidence=0.9,confirmed_us={T0 + 2 * SECOND_US}i,"
        f'duration_s=12.5,episode_id="dev-1:{T0}",got_up_after=1i,mean_intensity=3.625,'
        f'mean_mvc_pct=-1,movement="still",offset_us={T0 + 12_500_000}i,peak_intensity=7.25,'
        f'peak_mvc_pct=-1,quality_flags="" {T0}',
    ]


def test_v2_writes_spool_on_503_and_replay_in_order(
    endpoint: WriteEndpoint, tmp_path: Path
) -> None:
    store = v2_store(endpoint.url, tmp_path / "spool")
    endpoint.statuses.extend([503] * 3)  # the client's two quick retries, then the spool
    store.write_series("dev-1", [SeriesPoint(T0, 1.0, 1.0, None, None)])
    health = store.spool_health()
    assert health.records == 1 and "503" in (health.last_error or "")
    store.write_series("dev-1", [SeriesPoint(T0 + SECOND_US, 2.0, 1.0, None, None)])
    assert store.spool_health().records == 2  # queued behind the first, not sent
    wait_for(lambda: store.spool_health().records == 0, 10, what="spool replay")
    assert store.spool_health().replayed_records == 2
    store.write_series("dev-1", [SeriesPoint(T0 + 2 * SECOND_US, 3.0, 1.0, None, None)])
    store.close()
    delivered = [line for r in endpoint.requests if r.body for line in r.body.decode().split("\n")]
    envelopes = [line.split("envelope_uv=")[1].split(",")[0] for line in delivered]
    assert envelopes[-3:] == ["1", "2", "3"]
    assert all(r.path == "/api/v2/write" for r in endpoint.requests)


def test_v2_write_refused_as_bad_data_raises(endpoint: WriteEndpoint, tmp_path: Path) -> None:
    store = v2_store(endpoint.url, tmp_path / "spool")
    endpoint.statuses.append(400)
    with pytest.raises(UnstorableValue, match="HTTP 400"):
        store.write_series("dev-1", [SeriesPoint(T0, 1.0, 1.0, None, None)])
    assert store.spool_health().records == 0
    store.close()


def test_without_a_spool_an_unreachable_database_raises(tmp_path: Path) -> None:
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", "db", write_mode="v1", timeout_s=1)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.write_series("dev-1", [SeriesPoint(T0, 1.0, 1.0, None, None)])
    assert not store.ping()
    store.close()


def test_spool_is_bounded_and_then_refuses_writes(tmp_path: Path) -> None:
    store = InfluxStore(
        f"http://127.0.0.1:{free_port()}",
        "db",
        write_mode="v1",
        spool_dir=tmp_path / "spool",
        spool_max_mb=1,
        flush_interval_ms=60_000,
    )
    night = make_night(np.random.default_rng(20), hours=2.0)
    written = 0
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="bound"):
        for _ in range(3):  # about 0.7 MiB of line protocol per pass
            for start in range(0, len(night.series), 60):
                store.write_series("dev-1", night.series[start : start + 60])
                written += 60
    elapsed_s = time.monotonic() - started
    health = store.spool_health()
    assert 0 < health.bytes <= 1024 * 1024 == health.max_bytes
    assert health.records == written // 60
    assert health.oldest_age_s is not None and health.oldest_age_s >= 0
    assert elapsed_s < 10  # while down, writes go straight to the spool
    store.close()


@pytest.mark.integration
def test_spooled_writes_survive_a_store_restart(influxd: Influxd, tmp_path: Path) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"
    night = make_night(np.random.default_rng(21), hours=0.5, gap_s=(100, 200))
    down = InfluxStore(
        f"http://127.0.0.1:{free_port()}", database, write_mode="v1", spool_dir=tmp_path / "s"
    )
    night.write_to(down, chunk_s=120)
    spooled = down.spool_health().records
    down.close()
    assert spooled == 15 + 1 + 1 + 1 + 1  # series chunks, events, quality, health, letters
    up = InfluxStore(
        influxd.url, database, write_mode="v1", spool_dir=tmp_path / "s", create_database=True
    )
    assert up.spool_health().records == spooled
    assert up.flush()
    assert up.series("dev-1", T0, T0 + 1800 * SECOND_US, 5000) == list(night.series)
    assert up.episodes(EpisodeQuery(("dev-1",), T0, T0 + 1800 * SECOND_US)) == list(night.episodes)
    up.close()


def _stored(store: Store, end_us: int) -> tuple[list[object], list[SeriesPoint]]:
    episodes = store.episodes(EpisodeQuery(("dev-1",), T0, end_us))
    return episodes, store.series("dev-1", T0, end_us, 20_000)


@pytest.mark.integration
@pytest.mark.slow
def test_outage_during_a_night_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = Influxd.create(tmp_path / "influxd")
    server.start(timeout_s=60)
    night = make_night(np.random.default_rng(22), hours=2.0)
    end_us = T0 + 2 * 3600 * SECOND_US
    events = sorted(night.events(), key=lambda e: e.at_us)

    def stream(store: InfluxStore, outage: tuple[int, int] | None) -> list[int]:
        spooled = []
        for minute in range(120):
            if outage and minute == outage[0]:
                server.kill()  # SIGKILL: no chance to flush anything
            if outage and minute == outage[1]:
                server.start(timeout_s=60)
            chunk = night.series[minute * 60 : (minute + 1) * 60]
            store.write_series("dev-1", chunk)
            window = (T0 + minute * 60 * SECOND_US, T0 + (minute + 1) * 60 * SECOND_US)
            due = [e for e in events if window[0] <= e.at_us < window[1]]
            store.write_events(due)
            spooled.append(store.spool_health().records)
        return spooled

    try:
        reference = InfluxStore(server.url, "uninterrupted", write_mode="v1", create_database=True)
        stream(reference, None)
        expected = _stored(reference, end_us)
        reference.close()
        store = InfluxStore(
            server.url,
            "outage",
            write_mode="v1",
            create_database=True,
            spool_dir=tmp_path / "spool",
            flush_interval_ms=200,
            timeout_s=2,
        )
        spooled = stream(store, (40, 80))
        before = _stored(store, T0 + 40 * 60 * SECOND_US)
        wait_for(lambda: store.spool_health().records == 0, 60, what="spool drained")
        after = _stored(store, end_us)
        health = store.spool_health()
        store.close()
    finally:
        server.stop()
    assert max(spooled) > 0 and spooled[-1] >= 0
    assert health.replayed_records >= max(spooled)
    assert len(before[1]) == 40 * 60
    assert after == expected
    assert len(after[1]) == 7200 and len(after[0]) == len(night.episodes)
    print(
        f"\noutage: points before={len(before[1])} spooled batches max={max(spooled)} "
        f"replayed={health.replayed_records} after={len(after[1])} "
        f"(uninterrupted {len(expected[1])}); episodes after={len(after[0])} "
        f"(uninterrupted {len(expected[0])})"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_write_throughput_to_a_real_influxd(influxd: Influxd, tmp_path: Path) -> None:
    store = InfluxStore(
        influxd.url, f"t_{uuid.uuid4().hex[:12]}", write_mode="v1", create_database=True
    )
    rng = np.random.default_rng(23)
    devices = [f"dev-{n}" for n in range(20)]
    per_device_s = 3000
    values = rng.gamma(2.0, 2.0, (len(devices), per_device_s))
    started = time.perf_counter()
    for chunk_start in range(0, per_device_s, 300):
        for row, device_id in enumerate(devices):
            store.write_series(
                device_id,
                [
                    SeriesPoint(T0 + s * SECOND_US, float(values[row, s]), 3.0, 0.01, "supine")
                    for s in range(chunk_start, chunk_start + 300)
                ],
            )
    elapsed_s = time.perf_counter() - started
    points = len(devices) * per_device_s
    rate = points / elapsed_s
    assert len(store.series("dev-7", T0, T0 + per_device_s * SECOND_US, 5000)) == per_device_s
    store.close()
    print(f"\nthroughput: {points} points in {elapsed_s:.2f} s = {rate:.0f} points/s")
    assert rate > 2000


def test_spooled_lines_the_server_refuses_are_set_aside(
    endpoint: WriteEndpoint, tmp_path: Path
) -> None:
    store = v2_store(endpoint.url, tmp_path / "spool")
    endpoint.statuses.extend([503, 503, 503, 400])
    store.write_series("dev-1", [SeriesPoint(T0, 1.0, 1.0, None, None)])
    assert store.spool_health().records == 1
    wait_for(lambda: store.spool_health().records == 0, 10, what="spool replay")
    rejected = list((tmp_path / "spool" / "rejected").iterdir())
    assert len(rejected) == 1
    assert rejected[0].read_text() == f"series,device_id=dev-1 envelope_uv=1,floor_uv=1 {T0}"
    store.close()


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    from email.utils import format_datetime

    assert parse_retry_after_s("30") == 30.0
    assert parse_retry_after_s(None) == 0.0
    assert parse_retry_after_s("soon") == 0.0
    assert parse_retry_after_s("86400") == 300.0  # capped
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after_s(in_a_minute) <= 60


def test_reads_send_influxql_with_the_token(endpoint: WriteEndpoint, tmp_path: Path) -> None:
    store = v2_store(endpoint.url, None)
    assert store.episodes(EpisodeQuery(("dev-1",), T0, T0 + SECOND_US)) == []
    store.close()
    (request,) = endpoint.requests
    assert request.path == "/query"
    assert request.headers["Authorization"] == "Token reader:s3cret"
    form = parse_qs(request.body.decode())
    assert form["db"] == ["crampwatch"] and form["rp"] == ["autogen"] and form["epoch"] == ["u"]
    (statement,) = form["q"]
    assert statement.startswith('SELECT * FROM "crampwatch"."autogen"."episodes" WHERE ')
    assert "device_id = 'dev-1'" in statement


def test_v1_write_path_on_the_wire(endpoint: WriteEndpoint) -> None:
    store = InfluxStore(
        endpoint.url, "crampwatch", token="writer:pw", write_mode="v1", retention_policy="one_year"
    )
    store.write_series("dev-1", [SeriesPoint(T0, 2.5, None, None, None)])
    store.close()
    (request,) = endpoint.requests
    assert request.path == "/write"
    assert request.query == {"db": ["crampwatch"], "precision": ["u"], "rp": ["one_year"]}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"writer:pw").decode()
    assert request.body.decode() == f"series,device_id=dev-1 envelope_uv=2.5 {T0}"


def count_requests(store: InfluxStore) -> list[str]:
    """Paths of the HTTP requests the store's client sends from now on (a hook on the real
    client, the requests still go to the server)."""
    paths: list[str] = []
    store._http.event_hooks["request"].append(lambda request: paths.append(request.url.path))
    return paths


def test_a_grouped_block_writes_in_one_request_when_it_ends(
    influxd: Influxd, tmp_path: Path
) -> None:
    store = open_influx(influxd, tmp_path / "spool")
    writes = count_requests(store)
    points = [SeriesPoint(T0 + s * SECOND_US, 2.0 + s, 1.0, 0.01, "supine") for s in range(30)]
    with store.grouped():
        for device_id in ("dev-a", "dev-b", "dev-c"):
            store.write_series(device_id, points)
        ended = episode("dev-a", T0 + 5 * SECOND_US, 12.0)
        store.write_events([EpisodeEvent(EventKind.ENDED, ended, ended.offset_us or T0)])
        assert writes == []  # nothing sent before the block ends
    assert writes == ["/write"]
    for device_id in ("dev-a", "dev-b", "dev-c"):
        assert store.series(device_id, T0, T0 + 30 * SECOND_US) == points
    assert len(store.episodes(EpisodeQuery(("dev-a",), T0, T0 + 60 * SECOND_US))) == 1
    with pytest.raises(RuntimeError, match="nest"), store.grouped(), store.grouped():
        pass
    store.close()


def test_a_grouped_block_that_raises_writes_nothing(influxd: Influxd, tmp_path: Path) -> None:
    store = open_influx(influxd, tmp_path / "spool")
    with pytest.raises(StoreUnavailable), store.grouped():
        store.write_series("dev-a", [SeriesPoint(T0, 1.0, 1.0, None, None)])
        raise StoreUnavailable("the batch failed before it ended")
    assert store.series("dev-a", T0, T0 + SECOND_US) == []
    store.write_series("dev-a", [SeriesPoint(T0, 1.0, 1.0, None, None)])  # no group left open
    assert len(store.series("dev-a", T0, T0 + SECOND_US)) == 1
    store.close()


def test_a_grouped_write_the_server_refuses_in_part_keeps_the_other_calls(
    influxd: Influxd, tmp_path: Path
) -> None:
    store = open_influx(influxd, tmp_path / "spool")
    # a string envelope a month later (another shard) makes a float one there a field type
    # conflict: the server refuses that call's line and takes the others
    later = T0 + 30 * 86_400 * SECOND_US
    store._writer.deliver([f'series,device_id=dev-x envelope_uv="text" {later}'])
    good = [SeriesPoint(T0 + s * SECOND_US, 1.0 + s, 1.0, None, None) for s in range(5)]
    with store.grouped():
        store.write_series("dev-good", good)
        store.write_series("dev-bad", [SeriesPoint(later, 3.0, 1.0, None, None)])
        store.write_series("dev-late", good)
    assert store.refused_in_groups == 1
    assert store.series("dev-good", T0, T0 + 5 * SECOND_US) == good
    assert store.series("dev-late", T0, T0 + 5 * SECOND_US) == good
    store.close()
