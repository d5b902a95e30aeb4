"""``crampwatch users|grants|keys|devices``: the metadata the API serves, made from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crampwatch.cli import build_app
from ingest.broker_auth import check_login
from storage.metadata import MetadataDB


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CRAMPWATCH_DATA_DIR": str(tmp_path / "data"),
        "CRAMPWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "passwd"),
        "CRAMPWATCH_BROKER_ACL_FILE": str(tmp_path / "acl"),
    }


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(build_app(), list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_admin_flow_creates_what_the_api_reads(env: dict[str, str], tmp_path: Path) -> None:
    wearer = run(env, "users", "add", "Ann", "--tz", "Europe/Paris", "--id", "ann")
    clinician = run(env, "users", "add", "Dr C", "--role", "clinician")
    grant = run(env, "grants", "add", "--clinician", clinician, "--wearer", wearer)
    token = run(env, "keys", "create", "--role", "clinician", "--clinician", clinician)
    out = run(env, "devices", "add", "ann-left", "--owner", wearer, "--site", "left_calf")
    password = out.splitlines()[-1].removeprefix("mqtt password: ")
    assert check_login(tmp_path / "passwd", "ann-left", password)
    assert "user ann-left" in (tmp_path / "acl").read_text()

    db = MetadataDB(f"sqlite:///{tmp_path / 'data' / 'metadata.sqlite3'}")
    principal = db.authenticate(token)
    assert principal is not None and principal.clinician_id == clinician
    assert db.has_access(clinician, "ann")
    device = db.device("ann-left")
    assert device is not None and (device.site, device.time_zone) == ("left_calf", "Europe/Paris")
    run(env, "grants", "revoke", grant)
    assert not db.has_access(clinician, "ann")
    run(env, "keys", "revoke", principal.key_id)
    assert db.authenticate(token) is None
    assert token not in run(env, "keys", "list")
    db.close()


def test_bad_input_is_one_clear_line(env: dict[str, str]) -> None:
    result = CliRunner().invoke(build_app(), ["users", "add", "Z", "--tz", "Mars/Base"], env=env)
    assert result.exit_code == 2 and "unknown time zone 'Mars/Base'" in result.output
    result = CliRunner().invoke(build_app(), ["devices", "add", "d1", "--owner", "ghost"], env=env)
    assert result.exit_code == 2 and "wearer ghost does not exist" in result.output
