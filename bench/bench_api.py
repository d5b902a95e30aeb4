"""API latency under load: history and summary endpoints over a year of 100 wearers' episodes.

    python -m bench.bench_api [--quick] [--wearers 100] [--requests 1000] [--concurrency 8]

A SQLite results store and a SQLite metadata DB in a temporary directory; every wearer has one
device and a year of nights with cramps on about half of them (1-4 episodes each); a clinician
holds grants for all. The API runs under uvicorn in a process of its own, as ``crampwatch
serve`` runs it; the load generator keeps ``--concurrency`` HTTP/1.1 keep-alive connections
busy from as many threads, each request for a random wearer with the clinician's key:

- history: ``/episodes`` over one year, 100 per page: the first page, a later page by cursor
  (the cursor fetched untimed just before), or filtered by a minimum duration;
- nights: ``/nights`` for the last 365 nights (per-night summaries of the year);
- weekly: ``/summary/weekly?weeks=52`` (weekly summaries, trend and red flags).

Latency is from sending a request to reading its whole answer; throughput is requests answered
per second of the timed phase.
"""

from __future__ import annotations

import itertools
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import parser, percentile, table, write_result
from detection.events import Episode, EpisodeEvent, EventKind, Movement
from storage.localtime import to_us
from storage.metadata import MetadataDB, Role
from storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def populate(
    store: SqliteStore, metadata: MetadataDB, rng: np.random.Generator, wearers: int, days: int
) -> tuple[str, int]:
    """Wearers, devices, one clinician with grants, and their episodes; (token, episodes)."""
    metadata.add_clinician("Dr Bench", clinician_id="bench-clinician")
    total = 0
    first_night = (NOW - timedelta(days=days)).replace(hour=22, minute=0, second=0)
    for w in range(wearers):
        wearer_id, device_id = f"w{w:03d}", f"dev-{w:03d}"
        metadata.add_wearer(f"Wearer {w}", wearer_id=wearer_id, time_zone="Europe/Paris")
        metadata.add_device(device_id, wearer_id, site="left_calf")
        metadata.grant("bench-clinician", wearer_id, granted_by=Role.ADMIN)
        events = []
        for day in range(days):
            if rng.random() > 0.5:
                continue
            night_us = to_us(first_night + timedelta(days=day))
            for _ in range(int(rng.integers(1, 5))):
                onset_us = night_us + int(rng.uniform(0, 8 * 3600) * 1e6)
                duration_s = float(np.clip(rng.lognormal(np.log(60), 0.8), 5, 900))
                episode = Episode(
                    episode_id=f"{device_id}:{onset_us}",
                    device_id=device_id,
                    site="left_calf",
                    onset_us=onset_us,
                    confirmed_us=onset_us + 2_000_000,
                    offset_us=onset_us + int(duration_s * 1e6),
                    duration_s=duration_s,
                    peak_intensity=float(rng.uniform(5, 60)),
                    mean_intensity=float(rng.uniform(3, 20)),
                    confidence=0.9,
                    movement=Movement.STILL,
                    got_up_after=bool(rng.random() < 0.3),
                )
                events.append(EpisodeEvent(EventKind.ENDED, episode, episode.offset_us or 0))
        store.write_events(events)
        total += len(events)
    token = metadata.create_key(Role.CLINICIAN, clinician_id="bench-clinician").token
    return token, total


KINDS = ("history: first page", "history: next page", "history: filtered", "nights", "weekly")


def _serve(results: str, metadata_url: str, port: int) -> None:
    """The API over the populated databases under uvicorn (the server process)."""
    import uvicorn

    from api.app import create_app

    store = SqliteStore(Path(results))
    metadata = MetadataDB(metadata_url)
    app = create_app(store=store, metadata=metadata, clock=lambda: NOW, rate_limit_per_min=10**9)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def api_server(results: Path, metadata_url: str) -> Iterator[str]:
    """Start the API in a process of its own; yields its base URL once it answers."""
    from tests.servers import free_port

    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=_serve, args=(str(results), metadata_url, port), name="bench-api", daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.join(10)


def request_for(kind: str, wearer_id: str) -> tuple[str, dict[str, Any]]:
    """Path and query of one request of ``kind`` (a next page's cursor is added later)."""
    base = f"/v1/wearers/{wearer_id}"
    year = {"start": (NOW - timedelta(days=365)).isoformat(), "end": NOW.isoformat(), "limit": 100}
    if kind == "history: filtered":
        return f"{base}/episodes", year | {"min_duration_s": 120}
    if kind.startswith("history"):
        return f"{base}/episodes", year
    if kind == "nights":
        today = NOW.date()
        return f"{base}/nights", {"first": (today - timedelta(days=364)).isoformat()}
    return f"{base}/summary/weekly", {"weeks": 52}


def load(
    url: str, token: str, wearers: int, requests: int, concurrency: int, seed: int
) -> tuple[dict[str, list[float]], float, int, list[str]]:
    """Run ``requests`` requests from ``concurrency`` threads; latencies (ms) per kind, the
    timed phase's wall seconds, the requests answered in it (a next page's cursor fetch
    included), and what went wrong (non-200 or empty answers)."""
    rng = np.random.default_rng(seed)
    plan = [(KINDS[i % len(KINDS)], f"w{int(rng.integers(wearers)):03d}") for i in range(requests)]
    work = iter(plan)
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    threads_n = max(1, concurrency)
    warmed = threading.Barrier(threads_n + 1)
    answered = [0]

    def client_thread() -> None:
        try:
            run_client()
        except (httpx.HTTPError, ValueError, KeyError, threading.BrokenBarrierError) as exc:
            warmed.abort()  # reported, and the other clients are not left at the barrier
            with lock:
                problems.append(f"client failed: {exc!r}")

    def run_client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
            for path, query in warmup:  # one of each kind, untimed, on this connection
                client.get(path, params=query)
            warmed.wait(timeout=120)
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    return
                kind, wearer_id = item
                path, query = request_for(kind, wearer_id)
                if kind == "history: next page":
                    first = client.get(path, params=query).json()
                    query = query | {"cursor": first["next_cursor"]}
                    with lock:
                        answered[0] += 1
                t0 = time.perf_counter()
                answer = client.get(path, params=query)
                elapsed_ms = (time.perf_counter() - t0) * 1e3
                ok = answer.status_code == 200 and bool(answer.json().get("data"))
                with lock:
                    answered[0] += 1
                    latencies[kind].append(elapsed_ms)
                    if not ok:
                        problems.append(f"{kind} {answer.status_code}: {answer.text[:200]}")

    warmup = [request_for(kind, "w000") for kind in KINDS]
    threads = [threading.Thread(target=client_thread) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    try:
        warmed.wait(timeout=120)
    except threading.BrokenBarrierError:
        problems.append("the clients did not all warm up")
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - t0, answered[0], problems


def summarize(
    latencies: dict[str, list[float]], wall_s: float, answered: int, concurrency: int
) -> dict[str, Any]:
    """Percentiles per kind, for the history requests together and for all; throughput."""
    history = list(itertools.chain(*(v for k, v in latencies.items() if k.startswith("history"))))
    every = list(itertools.chain(*latencies.values()))
    groups = {**latencies, "all history": history, "all": every}
    return {
        "concurrency": concurrency,
        "requests": len(every),
        "answered": answered,
        "wall_s": wall_s,
        "requests_per_s": answered / wall_s,
        "by_kind": {
            kind: {
                "n": len(values),
                "p50_ms": percentile(values, 50),
                "p95_ms": percentile(values, 95),
                "p99_ms": percentile(values, 99),
            }
            for kind, values in groups.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--wearers", type=int, default=None, help="Wearers (default 100).")
    p.add_argument(
        "--requests", type=int, default=None, help="Requests per concurrency level (1000)."
    )
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8],
        help="Connections kept busy at once; one timed phase per value.",
    )
    args = p.parse_args(argv)
    wearers = args.wearers or (5 if args.quick else 100)
    requests = args.requests or (50 if args.quick else 1000)
    rng = np.random.default_rng(args.seed)
    levels = []
    with tempfile.TemporaryDirectory(prefix="crampwatch-bench-api-") as tmp:
        results = Path(tmp) / "results.sqlite3"
        metadata_url = f"sqlite:///{Path(tmp) / 'metadata.sqlite3'}"
        store = SqliteStore(results)
        metadata = MetadataDB(metadata_url)
        t0 = time.perf_counter()
        token, episodes = populate(store, metadata, rng, wearers, 365)
        load_s = time.perf_counter() - t0
        store.close()
        metadata.close()
        with api_server(results, metadata_url) as url:
            for k, concurrency in enumerate(args.concurrency):
                latencies, wall_s, answered, problems = load(
                    url, token, wearers, requests, concurrency, args.seed + 1 + k
                )
                if problems:
                    print(f"{len(problems)} unexpected answers, the first: {problems[0]}")
                    return 1
                levels.append(summarize(latencies, wall_s, answered, concurrency))
    print(f"{wearers} wearers, {episodes:,} episodes over 365 nights (loaded in {load_s:.0f} s)")
    rows = [
        (
            str(level["concurrency"]),
            kind,
            str(f["n"]),
            f"{f['p50_ms']:.1f}",
            f"{f['p95_ms']:.1f}",
            f"{f['p99_ms']:.1f}",
            f"{level['requests_per_s']:,.0f}" if kind == "all" else "",
        )
        for level in levels
        for kind, f in level["by_kind"].items()
    ]
    print(table(rows, ("connections", "request", "n", "p50 ms", "p95 ms", "p99 ms", "requests/s")))
    first = levels[0]["by_kind"]
    write_result(
        args.out,
        "api",
        {
            "wearers": wearers,
            "episodes": episodes,
            # the summary rows: history and summaries at the first level (one connection)
            "p50_ms": first["all history"]["p50_ms"],
            "p95_ms": first["all history"]["p95_ms"],
            "p99_ms": first["all history"]["p99_ms"],
            "levels": levels,
        },
        quick=args.quick,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
