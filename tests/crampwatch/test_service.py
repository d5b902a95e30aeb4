"""The composition root: the red-flag watcher runs the rules on completed nights once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crampwatch.service import Service
from crampwatch.settings import load_settings
from detection.events import Episode, EpisodeEvent, EventKind, Movement
from tests.servers import free_port

pytestmark = pytest.mark.integration

NIGHT_ONE = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)


def _cramp(device_id: str, onset: datetime, duration_s: float) -> EpisodeEvent:
    onset_us = int(onset.timestamp() * 1e6)
    offset_us = onset_us + int(duration_s * 1e6)
    episode = Episode(
        episode_id=f"{device_id}:{onset_us}",
        device_id=device_id,
        site="left_calf",
        onset_us=onset_us,
        confirmed_us=onset_us + 3_000_000,
        offset_us=offset_us,
        duration_s=duration_s,
        peak_intensity=12.0,
        mean_intensity=8.0,
        confidence=0.9,
        movement=Movement.STILL,
        got_up_after=False,
    )
    return EpisodeEvent(EventKind.ENDED, episode, offset_us)


def test_the_night_watcher_raises_a_red_flag_once(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "CRAMPWATCH_DATA_DIR": str(tmp_path),
            "CRAMPWATCH_BROKER_EMBEDDED_PORT": str(free_port()),
        }
    )
    with Service(settings, run_api=False) as service:
        assert service.metadata is not None and service.store is not None
        service.metadata.add_wearer("Ann", wearer_id="ann")
        service.metadata.add_device("ann-left", "ann", site="left_calf")
        service.store.write_events(
            [_cramp("ann-left", NIGHT_ONE + timedelta(days=d), 40.0) for d in (0, 2, 4)]
        )
        after_third_night = NIGHT_ONE + timedelta(days=5, hours=1)  # night of 6 March is over
        assert service.evaluate_red_flags(after_third_night) >= 1
        flags = service.red_flags.flags(["ann-left"], active_only=True)
        assert any(flag.rule == "frequent_nights" for flag in flags)
        assert service.evaluate_red_flags(after_third_night) == 0


def test_a_new_demo_run_revokes_the_previous_demo_keys(tmp_path: Path) -> None:
    from crampwatch.commands.serve import prepare_demo
    from storage.metadata.db import MetadataDB

    metadata = MetadataDB(f"sqlite:///{tmp_path / 'metadata.sqlite3'}")
    first = prepare_demo(metadata, 2)
    assert metadata.authenticate(first.wearer) is not None
    second = prepare_demo(metadata, 3)
    assert metadata.authenticate(first.wearer) is None
    assert metadata.authenticate(first.admin) is None
    assert metadata.authenticate(second.clinician) is not None
    assert {d.device_id for d in metadata.devices()} == {"sim-0000", "sim-0001", "sim-0002"}
