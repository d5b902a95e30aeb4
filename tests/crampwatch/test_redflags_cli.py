"""``crampwatch redflags evaluate|list`` on a crafted episode history in a real data dir."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from alerts.nightly import latest_completed_night
from crampwatch.cli import build_app
from storage.factory import open_store
from storage.metadata import MetadataDB
from tests.api.conftest import make_episode, store_episodes

CRAMP_NIGHTS = (date(2026, 11, 10), date(2026, 11, 12), date(2026, 11, 15))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A data dir with Cy (Tokyo, one device, cramps on three nights) and Dee (no devices)."""
    data = tmp_path / "data"
    data.mkdir()
    metadata = MetadataDB(f"sqlite:///{data / 'metadata.sqlite3'}")
    metadata.add_wearer("Cy", time_zone="Asia/Tokyo", wearer_id="cy")
    metadata.add_wearer("Dee", time_zone="Europe/Paris", wearer_id="dee")
    metadata.add_device("cy-calf", "cy", site="left_calf")
    metadata.close()
    store = open_store("sqlite", data)
    onsets = [
        datetime.combine(n, datetime.min.time(), tzinfo=UTC) + timedelta(hours=14)
        for n in CRAMP_NIGHTS
    ]
    store_episodes(store, [make_episode("cy-calf", t, 60.0) for t in onsets])
    store.close()
    return {"CRAMPWATCH_DATA_DIR": str(data)}


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(build_app(), ["redflags", *args], env=env)


def ok(env: dict[str, str], *args: str) -> str:
    result = invoke(env, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_evaluate_prints_the_flag_once_with_its_nights(env: dict[str, str]) -> None:
    two = ok(env, "evaluate", "--wearer", "cy", "--night", "2026-11-12")
    assert "evaluated night 2026-11-12 of cy (cy-calf)" in two and "no new red flags" in two

    three = ok(env, "evaluate", "--wearer", "cy", "--night", "2026-11-15")
    lines = three.splitlines()
    assert lines[1] == "1 new red flag:" and lines[2].split()[:5] == [
        "FLAG", "DEVICE", "RULE", "STATE", "RAISED",
    ]  # fmt: skip
    row = lines[3].split()
    assert row[1:7] == [
        "cy-calf", "frequent_nights", "active", "2026-11-15", "2026-11-15",
        "2026-11-10,2026-11-12,2026-11-15",
    ]  # fmt: skip
    assert "Cramps on 3 of the last 7 nights" in lines[3]
    assert "no new red flags" in ok(env, "evaluate", "--wearer", "cy", "--night", "2026-11-15")

    [flag] = json.loads(ok(env, "list", "--wearer", "cy", "--active", "--json"))
    assert (flag["rule"], flag["state"], flag["device_id"]) == (
        "frequent_nights",
        "active",
        "cy-calf",
    )
    assert flag["nights"] == ["2026-11-10", "2026-11-12", "2026-11-15"]
    assert flag["flag_id"].startswith(row[0])
    assert ok(env, "list", "--wearer", "dee") == "no red flags\n"
    assert "frequent_nights" in ok(env, "list")


def test_evaluate_defaults_to_each_wearers_latest_completed_night(env: dict[str, str]) -> None:
    doc = json.loads(ok(env, "evaluate", "--json"))
    now = datetime.now(UTC)
    assert doc["evaluated"] == [
        {"wearer_id": "cy", "night": latest_completed_night(now, "Asia/Tokyo").isoformat(),
         "devices": ["cy-calf"]},
        {"wearer_id": "dee", "night": latest_completed_night(now, "Europe/Paris").isoformat(),
         "devices": []},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("evaluate", "--wearer", "ghost"), "error: wearer ghost does not exist"),
        (("list", "--wearer", "ghost"), "error: wearer ghost does not exist"),
        (("evaluate", "--night", "2026-13-01"), "error: --night '2026-13-01' is not a date"),
        (("evaluate", "--wearer", "cy", "--night", "2999-01-01"), "has not ended yet"),
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_line(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    result = invoke(env, *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
