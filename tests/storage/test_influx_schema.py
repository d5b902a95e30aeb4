"""Round trips of awkward values through both stores (the line-protocol codec included)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection.events import EpisodeEvent, EventKind, Movement, QualityFlag, SeriesPoint
from storage.base import DeadLetter, EpisodeQuery, Store
from storage.sqlite import SqliteStore
from tests.servers import Influxd
from tests.storage.conftest import NIGHT_START_US, episode, open_influx

T0 = NIGHT_START_US
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
positive = st.floats(allow_nan=False, allow_infinity=False, min_value=0.0, max_value=1e300)
duration_s = st.floats(min_value=0.0, max_value=86_400.0)
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80
)


def _stores(server: Influxd, directory: Path) -> list[Store]:
    sqlite = SqliteStore(directory / f"{uuid.uuid4().hex}.sqlite3")
    return [sqlite, open_influx(server, None)]


@pytest.mark.integration
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    peak=positive,
    duration=duration_s,
    confidence=st.floats(0.0, 1.0),
    mvc=st.none() | positive,
    movement=st.sampled_from(list(Movement)),
    got_up=st.none() | st.booleans(),
    flags=st.lists(st.sampled_from(list(QualityFlag)), unique=True, max_size=3).map(tuple),
    envelope=st.none() | finite,
    posture=st.none() | st.from_regex(r"[a-z_]{1,16}", fullmatch=True),
    detail=text,
    topic=text,
)
def test_values_come_back_exactly_as_written(
    influxd: Influxd,
    tmp_path_factory: pytest.TempPathFactory,
    peak: float,
    duration: float,
    confidence: float,
    mvc: float | None,
    movement: Movement,
    got_up: bool | None,
    flags: tuple[QualityFlag, ...],
    envelope: float | None,
    posture: str | None,
    detail: str,
    topic: str,
) -> None:
    cramp = episode("dev-1", T0, duration, peak=peak, got_up=got_up, flags=flags)
    cramp = type(cramp)(
        **{
            **cramp.__dict__,
            "confidence": confidence,
            "movement": movement,
            "peak_mvc_pct": mvc,
            "mean_mvc_pct": mvc,
            "duration_s": duration,
        }
    )
    point = SeriesPoint(T0, envelope, 0.5, None, posture)
    letter = DeadLetter(T0, topic, "_unknown", "bad_frame", detail, 12, "00ff")
    for store in _stores(influxd, tmp_path_factory.mktemp("roundtrip")):
        store.write_events([EpisodeEvent(EventKind.ENDED, cramp, T0)])
        store.write_series("dev-1", [point])
        store.write_dead_letters([letter])
        assert store.episodes(EpisodeQuery(("dev-1",), T0, T0 + 1)) == [cramp]
        assert store.series("dev-1", T0, T0 + 1_000_000) == [point]
        assert store.dead_letters(None, T0, T0 + 1) == [letter]
        store.close()
