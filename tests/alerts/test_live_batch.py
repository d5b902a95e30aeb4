"""A worker batch handed to the live sink in one transaction against device by device."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.live import LiveAlertSink
from detection.events import DetectorEvent, QualityEvent, QualityFlag
from ingest.detectors import BatchEventSink
from tests.alerts.builders import (
    S,
    SettableClock,
    cramp_events,
    episode_events,
    random_cramps,
)
from tests.alerts.conftest import sqlite_engine, statements_run

Handoffs = list[tuple[str, Sequence[DetectorEvent]]]


episode = random_cramps(["dev-a", "dev-b", "dev-c", "dev-d"])
batch = st.tuples(
    st.integers(1, 12),  # events in the batch
    # how far the arrival clock is ahead of the batch's last event, µs
    st.sampled_from([0, 0, 500_000, 5_000_000, 15_000_000, 40_000_000]),
    # a quality event of another device this much later in device time (s), or none
    st.sampled_from([None, None, 5.0, 12.0, 30.0]),
    st.booleans(),  # a tick follows
)


def batches(
    events: list[DetectorEvent], shapes: list[tuple[int, int, float | None, bool]]
) -> list[tuple[Handoffs, int, bool]]:
    """The events cut into worker batches: each device's events of a batch in one handoff,
    devices in the order they first appear in it, as the worker hands them."""
    out: list[tuple[Handoffs, int, bool]] = []
    k = 0
    while k < len(events):
        size, ahead_us, quality_after_s, tick = shapes[len(out) % len(shapes)]
        chunk = events[k : k + size]
        k += size
        per_device: dict[str, list[DetectorEvent]] = {}
        for event in chunk:
            per_device.setdefault(event.episode.device_id, []).append(event)  # type: ignore[attr-defined]
        last_us = chunk[-1].at_us
        if quality_after_s is not None:
            later = last_us + round(quality_after_s * S)
            per_device.setdefault("dev-q", []).append(
                QualityEvent("dev-q", QualityFlag.GAP, later, None, later)
            )
            first = chunk[0].episode.device_id  # type: ignore[attr-defined]
            per_device[first].append(QualityEvent(first, QualityFlag.MAINS, later, None, later))
        out.append((list(per_device.items()), last_us + ahead_us, tick))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    episodes=st.lists(episode, min_size=1, max_size=8),
    shapes=st.lists(batch, min_size=1, max_size=40),
    gap_s=st.sampled_from([0.0, 10.0]),
)
def test_a_batch_in_one_transaction_alerts_as_its_devices_one_by_one(
    episodes: list[tuple[str, float, float, float, bool]],
    shapes: list[tuple[int, int, float | None, bool]],
    gap_s: float,
) -> None:
    plan = batches(cramp_events(episodes), shapes)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = []
        for batched in (True, False):
            engine = sqlite_engine(Path(tmp) / f"batched-{batched}.db")
            clock = SettableClock()
            sink = LiveAlertSink(engine, None, merge_gap_s=gap_s, end_wait_s=120.0, clock_us=clock)
            for handoffs, arrival_us, tick in plan:
                clock.now_us = arrival_us
                if batched:
                    sink.handle_many(handoffs, arrival_us)
                else:
                    for device_id, events in handoffs:
                        sink.handle(device_id, events, arrival_us)
                if tick:
                    sink.tick(arrival_us + S)
            clock.now_us = plan[-1][1] + 400 * S
            sink.tick()
            outcomes.append(
                (
                    sink.lifecycles(),
                    sorted((r.event_id, r.event_type, r.body) for r in sink.outbox()),
                )
            )
            engine.dispose()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0], "every example has at least one episode, so one lifecycle"


def test_the_live_sink_takes_batches() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = sqlite_engine(Path(tmp) / "a.db")
        assert isinstance(LiveAlertSink(engine, None), BatchEventSink)
        engine.dispose()


def test_a_batch_of_updates_reads_its_links_and_lifecycles_in_two_queries() -> None:
    """Twelve devices with a cramp under way, each with two updates in the batch: the batch
    reads what it needs in two queries, not two per event."""
    devices = [f"dev-{k:02d}" for k in range(12)]
    streams = {d: episode_events(d, 10.0 + k, 60.0) for k, d in enumerate(devices)}
    with tempfile.TemporaryDirectory() as tmp:
        engine = sqlite_engine(Path(tmp) / "a.db")
        clock = SettableClock()
        sink = LiveAlertSink(engine, None, merge_gap_s=10.0, clock_us=clock)
        started = [(d, events[:1]) for d, events in streams.items()]
        clock.now_us = max(events[0].at_us for events in streams.values())
        sink.handle_many(started, clock.now_us)
        updates: Handoffs = [(d, events[1:3]) for d, events in streams.items()]
        assert all(len(events) == 2 for _, events in updates)
        clock.now_us = max(events[-1].at_us for _, events in updates)
        with statements_run(engine) as statements:
            sink.handle_many(updates, clock.now_us)
        selects = [s for s in statements if s.upper().startswith("SELECT")]
        assert len(selects) == 2, selects
        seen = {r.device_id: r.active_s for r in sink.lifecycles()}
        assert sorted(seen) == devices  # the updates were taken: every lifecycle is there
        engine.dispose()
