"""Latency of the episode-history endpoint with a year of episodes for 100 wearers.

    python -m bench.bench_api [--quick] [--wearers 100] [--requests 1000]

A SQLite results store and a SQLite metadata DB in a temporary directory; every wearer has one
device and a year of nights with cramps on about half of them (1-4 episodes each); a clinician
holds grants for all. Requests go through the whole FastAPI stack in-process (authentication,
access check, rate limiter, store query, serialisation), clinician key, random wearer, a
one-year range, first page or a later page by cursor, some with a minimum duration.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from api.app import create_app
from api.timewin import to_us
from bench.common import parser, percentile, table, write_result
from detection.events import Episode, EpisodeEvent, EventKind, Movement
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


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--wearers", type=int, default=100)
    p.add_argument("--requests", type=int, default=1000)
    args = p.parse_args(argv)
    wearers = 5 if args.quick else args.wearers
    requests = 50 if args.quick else args.requests
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="crampwatch-bench-api-") as tmp:
        store = SqliteStore(Path(tmp) / "results.sqlite3")
        metadata = MetadataDB(f"sqlite:///{Path(tmp) / 'metadata.sqlite3'}")
        t0 = time.perf_counter()
        token, episodes = populate(store, metadata, rng, wearers, 365)
        load_s = time.perf_counter() - t0
        app = create_app(
            store=store, metadata=metadata, clock=lambda: NOW, rate_limit_per_min=1_000_000
        )
        headers = {"Authorization": f"Bearer {token}"}
        params = {"start": (NOW - timedelta(days=365)).isoformat(), "end": NOW.isoformat()}
        latencies_ms: dict[str, list[float]] = {"first page": [], "next page": [], "filtered": []}
        with TestClient(app) as client:
            for i in range(requests):
                wearer_id = f"w{int(rng.integers(wearers)):03d}"
                url = f"/v1/wearers/{wearer_id}/episodes"
                kind = ("first page", "next page", "filtered")[i % 3]
                query = dict(params, limit=100)
                if kind == "filtered":
                    query["min_duration_s"] = 120
                if kind == "next page":
                    first = client.get(url, params=query, headers=headers).json()
                    query["cursor"] = first["next_cursor"]
                t1 = time.perf_counter()
                answer = client.get(url, params=query, headers=headers)
                latencies_ms[kind].append((time.perf_counter() - t1) * 1e3)
                if answer.status_code != 200 or not answer.json()["data"]:
                    print(f"unexpected answer {answer.status_code}: {answer.text[:200]}")
                    return 1
        store.close()
        metadata.close()
    every = [x for values in latencies_ms.values() for x in values]
    rows = [
        (
            kind,
            str(len(values)),
            f"{percentile(values, 50):.1f}",
            f"{percentile(values, 95):.1f}",
            f"{percentile(values, 99):.1f}",
        )
        for kind, values in [*latencies_ms.items(), ("all", every)]
    ]
    print(f"{wearers} wearers, {episodes:,} episodes over 365 nights (loaded in {load_s:.0f} s)")
    print(table(rows, ("history request", "n", "p50 ms", "p95 ms", "p99 ms")))
    write_result(
        args.out,
        "api",
        {
            "wearers": wearers,
            "episodes": episodes,
            "requests": len(every),
            "p50_ms": percentile(every, 50),
            "p95_ms": percentile(every, 95),
            "p99_ms": percentile(every, 99),
            "by_kind": {k: {"p95_ms": percentile(v, 95)} for k, v in latencies_ms.items()},
        },
        quick=args.quick,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
