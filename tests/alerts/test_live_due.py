"""The live sink's in-memory check of due lifecycles against always asking the database."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.live import LiveAlertSink
from detection.events import QualityEvent, QualityFlag
from tests.alerts.builders import S, SettableClock, cramp_events, episode_events, random_cramps
from tests.alerts.conftest import sqlite_engine, statements_run


class AlwaysQueries(LiveAlertSink):
    """The sink as it was before the check: every transaction runs the resolving query."""

    def _any_due(
        self,
        waiting: object,
        device_id: str | None,
        device_now_us: int | None,
        arrival_us: int,
    ) -> bool:
        return True


episode = random_cramps(["dev-a", "dev-b", "dev-c"])
step = st.tuples(
    # how far the arrival clock is ahead of device time at this event, µs
    st.sampled_from([0, 0, 500_000, 5_000_000, 15_000_000, 40_000_000]),
    # a quality event of the same device this much later in device time (s), or none
    st.sampled_from([None, None, 5.0, 11.0, 12.0, 30.0]),
    st.booleans(),  # a tick follows
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    episodes=st.lists(episode, min_size=1, max_size=6),
    steps=st.lists(step, min_size=1, max_size=80),
    gap_s=st.sampled_from([0.0, 10.0]),
)
def test_skipping_the_resolving_query_when_nothing_is_due_changes_no_alert(
    episodes: list[tuple[str, float, float, float, bool]],
    steps: list[tuple[int, float | None, bool]],
    gap_s: float,
) -> None:
    """The sink's own record of waiting lifecycles against the query every time, and
    against a sink restarted half-way (which reads that record from the database)."""
    events = cramp_events(episodes)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = []
        for cls, restart_at in ((LiveAlertSink, None), (AlwaysQueries, None), (LiveAlertSink, 0)):
            name = f"{cls.__name__}-{restart_at}"
            engine = sqlite_engine(Path(tmp) / f"{name}.db")
            clock = SettableClock()
            sink = cls(engine, None, merge_gap_s=gap_s, end_wait_s=120.0, clock_us=clock)
            for k, event in enumerate(events):
                if restart_at is not None and k == len(events) // 2:
                    sink = cls(engine, None, merge_gap_s=gap_s, end_wait_s=120.0, clock_us=clock)
                ahead_us, quality_after_s, tick = steps[k % len(steps)]
                arrival_us = event.at_us + ahead_us
                clock.now_us = arrival_us
                device = event.episode.device_id
                sink.handle(device, [event], arrival_us)
                if quality_after_s is not None:
                    later = event.at_us + round(quality_after_s * S)
                    quality = QualityEvent(device, QualityFlag.GAP, later, None, later)
                    sink.handle(device, [quality], arrival_us)
                if tick:
                    sink.tick(arrival_us + ahead_us)
            clock.now_us = events[-1].at_us + 400 * S
            sink.tick()
            outcomes.append(
                (
                    sink.lifecycles(),
                    [(r.event_id, r.event_type, r.body) for r in sink.outbox()],
                )
            )
            engine.dispose()
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_waiting_lifecycles_are_known_without_asking_the_database() -> None:
    """A cramp that ends pauses its lifecycle: nothing is due yet, so neither the resolving
    query nor a read of the waiting lifecycles runs, and later calls with only quality
    events run no statement at all until the pause has lasted the merge gap."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = sqlite_engine(Path(tmp) / "a.db")
        clock = SettableClock()
        sink = LiveAlertSink(engine, None, merge_gap_s=10.0, clock_us=clock)
        events = episode_events("dev-a", 100.0, 30.0)
        clock.now_us = events[0].at_us
        sink.handle("dev-a", events[:-1], clock.now_us)  # started and updates: open
        with statements_run(engine) as statements:
            clock.now_us = events[-1].at_us
            sink.handle("dev-a", events[-1:], clock.now_us)  # ended: paused
            assert statements  # the pause was written
            assert not any(_selects_by_state(s) for s in statements), statements
            statements.clear()
            later = events[-1].at_us + 5 * S  # device time within the gap
            quality = QualityEvent("dev-a", QualityFlag.GAP, later, None, later)
            clock.now_us += 2 * S
            sink.handle("dev-a", [quality], clock.now_us)
            sink.tick(clock.now_us)
            assert statements == []
            clock.now_us += 20 * S  # past the gap (and the confirmation delay) by wall clock
            sink.tick(clock.now_us)
        assert [r.state for r in sink.lifecycles()] == ["resolved"]
        assert any(_selects_by_state(s) for s in statements)  # the resolving query ran
        engine.dispose()


def _selects_by_state(statement: str) -> bool:
    """A query that looks for lifecycles by their state (resolving, or reading the waiting)."""
    where = statement.partition(" WHERE ")[2]
    return statement.startswith("SELECT") and "alert_lifecycles.state" in where


def test_a_lifecycle_resolved_by_another_sink_is_forgotten() -> None:
    """Two sinks on one database (two workers): the one that started later knows the other's
    paused lifecycle and resolves it when due; the other asks once, finds nothing, and stops
    asking."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = sqlite_engine(Path(tmp) / "a.db")
        clock = SettableClock()
        first = LiveAlertSink(engine, None, merge_gap_s=10.0, clock_us=clock)
        events = episode_events("dev-b", 100.0, 30.0)
        clock.now_us = events[-1].at_us
        first.handle("dev-b", events, clock.now_us)  # ended: paused, known to the first
        second = LiveAlertSink(engine, None, merge_gap_s=10.0, clock_us=clock)
        clock.now_us += 1 * S
        second.tick(clock.now_us)  # reads the waiting lifecycles: nothing due yet
        clock.now_us += 20 * S
        second.tick(clock.now_us)  # past the gap: resolves it
        assert [r.state for r in second.lifecycles()] == ["resolved"]
        with statements_run(engine) as statements:
            first.tick(clock.now_us)
            assert sum(_selects_by_state(s) for s in statements) == 1  # asked, found nothing
            statements.clear()
            first.tick(clock.now_us + S)
            assert statements == []
        assert len(first.outbox()) == 2  # started by the first, ended by the second, once
        engine.dispose()
