"""Settings: defaults work on one machine, env beats TOML, bad values give one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crampwatch.cli import build_app
from crampwatch.settings import SettingsError, load_settings, settings_table


def test_defaults_need_nothing_installed() -> None:
    settings = load_settings(environ={})
    assert settings.broker.url is None
    assert settings.store.backend == "sqlite"
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8000)


def test_environment_beats_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "crampwatch.toml"
    config.write_text(
        '[store]\nbackend = "influx"\ninflux_database = "from_toml"\n[api]\nport = 9000\n'
    )
    settings = load_settings(config, environ={"CRAMPWATCH_API_PORT": "9100"})
    assert settings.store.backend == "influx"
    assert settings.store.influx_database == "from_toml"
    assert settings.api.port == 9100


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CRAMPWATCH_STORE_BACKEND": "postgres"}, "CRAMPWATCH_STORE_BACKEND"),
        ({"CRAMPWATCH_API_PORT": "70000"}, "CRAMPWATCH_API_PORT"),
        ({"CRAMPWATCH_BROKER_URL": "http://broker"}, "mqtt://"),
        ({"CRAMPWATCH_INGEST_WORKER_COUNT": "zero"}, "CRAMPWATCH_INGEST_WORKER_COUNT"),
    ],
)
def test_a_bad_value_names_the_setting(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected) as info:
        load_settings(environ=environ)
    assert "\n" not in str(info.value)


def test_unknown_toml_table_and_key_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[stroe]\nbackend = 'sqlite'\n")
    with pytest.raises(SettingsError, match="unknown table"):
        load_settings(config, environ={})
    config.write_text("[store]\nbakend = 'sqlite'\n")
    with pytest.raises(SettingsError, match="CRAMPWATCH_STORE_BAKEND"):
        load_settings(config, environ={})


def test_cli_stops_with_one_line_and_nonzero_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAMPWATCH_STORE_BACKEND", "nope")
    result = CliRunner().invoke(build_app(), ["config"])
    assert result.exit_code == 2
    assert "CRAMPWATCH_STORE_BACKEND" in result.output
    assert "'sqlite' or 'influx'" in result.output


def test_every_setting_is_documented() -> None:
    rows = settings_table()
    assert len(rows) > 30
    assert all(env.startswith("CRAMPWATCH_") and description for env, _, description in rows)


def test_every_command_has_help() -> None:
    app = build_app()
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    import typer.main

    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert group.commands[name].help, f"{name} has no help text"  # type: ignore[attr-defined]
