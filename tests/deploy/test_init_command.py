"""``crampwatch init``: a private .env with fresh secrets that reruns keep, rotation of one
secret, and the broker's service accounts written from the environment inside the stack."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crampwatch.cli import build_app
from crampwatch.commands.init import (
    STACK_ENV,
    InitError,
    parse_env_file,
    render_env_file,
    resolve_values,
)
from ingest.broker_auth import (
    add_device_credentials,
    broker_accounts,
    check_login,
    parse_acl_file,
)

SECRETS = [var.name for var in STACK_ENV if var.secret]
ACCOUNTS = {var.broker_account: var.name for var in STACK_ENV if var.broker_account}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), ["init", *args], env=env)
    return result.exit_code, result.output


def test_writes_private_env_with_distinct_random_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    code, output = run("--env-file", str(env_file))
    assert code == 0, output
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = parse_env_file(env_file.read_text())
    assert set(values) == {var.name for var in STACK_ENV}
    secrets = [values[name] for name in SECRETS]
    assert len(set(secrets)) == len(secrets)
    assert all(len(s) >= 24 and s.replace("-", "").replace("_", "").isalnum() for s in secrets)
    assert values["INGEST_REPLICAS"] == "1"
    for secret in secrets:
        assert secret not in output


def test_rerun_keeps_values_and_fills_missing_ones(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    run("--env-file", str(env_file))
    first = parse_env_file(env_file.read_text())
    text = env_file.read_text().replace(
        f"GRAFANA_ADMIN_PASSWORD={first['GRAFANA_ADMIN_PASSWORD']}", ""
    )
    text = text.replace("INGEST_REPLICAS=1", "INGEST_REPLICAS=3") + "OPERATOR_NOTE=kept\n"
    env_file.write_text(text)
    code, output = run("--env-file", str(env_file))
    assert code == 0 and "GRAFANA_ADMIN_PASSWORD" in output
    second = parse_env_file(env_file.read_text())
    assert second["INGEST_REPLICAS"] == "3" and second["OPERATOR_NOTE"] == "kept"
    assert second["GRAFANA_ADMIN_PASSWORD"] not in ("", first["GRAFANA_ADMIN_PASSWORD"])
    for name in SECRETS:
        if name != "GRAFANA_ADMIN_PASSWORD":
            assert second[name] == first[name]


def test_rotate_replaces_one_secret(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    run("--env-file", str(env_file))
    before = parse_env_file(env_file.read_text())
    code, _ = run("--env-file", str(env_file), "--rotate", "MQTT_API_PASSWORD")
    after = parse_env_file(env_file.read_text())
    assert code == 0
    assert after["MQTT_API_PASSWORD"] != before["MQTT_API_PASSWORD"]
    assert {k: v for k, v in after.items() if k != "MQTT_API_PASSWORD"} == {
        k: v for k, v in before.items() if k != "MQTT_API_PASSWORD"
    }


def test_rotating_a_non_secret_is_refused(tmp_path: Path) -> None:
    code, output = run("--env-file", str(tmp_path / ".env"), "--rotate", "MQTT_PORT")
    assert code == 2 and "cannot rotate ['MQTT_PORT']" in output
    assert not (tmp_path / ".env").exists()


def test_inside_the_stack_writes_service_accounts_and_keeps_devices(tmp_path: Path) -> None:
    env_file, broker = tmp_path / ".env", tmp_path / "auth"
    run("--env-file", str(env_file))
    values = parse_env_file(env_file.read_text())
    device_password = add_device_credentials(broker / "passwd", broker / "acl", "dev-a")
    environ = {name: values[name] for name in ACCOUNTS.values()}

    code, output = run("--no-env-file", "--broker-dir", str(broker), env=environ)
    assert code == 0, output
    assert broker_accounts(broker / "passwd") == ["_alerts", "_api", "_health", "_ingest", "dev-a"]
    for account, name in ACCOUNTS.items():
        assert check_login(broker / "passwd", account, values[name])
    assert check_login(broker / "passwd", "dev-a", device_password)
    assert "_ingest" in parse_acl_file((broker / "acl").read_text())

    # A second start changes nothing (no needless broker reload) ...
    before = (broker / "passwd").read_bytes()
    code, output = run("--no-env-file", "--broker-dir", str(broker), env=environ)
    assert code == 0 and "updated: none" in output
    assert (broker / "passwd").read_bytes() == before
    # ... until a password in .env changes.
    environ["MQTT_API_PASSWORD"] = "rotated-password-value"
    code, output = run("--no-env-file", "--broker-dir", str(broker), env=environ)
    assert code == 0 and "updated: _api" in output
    assert check_login(broker / "passwd", "_api", "rotated-password-value")


def test_inside_the_stack_a_missing_secret_stops_with_its_name(tmp_path: Path) -> None:
    code, output = run(
        "--no-env-file", "--broker-dir", str(tmp_path), env={"MQTT_INGEST_PASSWORD": ""}
    )
    assert code == 2
    assert "is not set" in output
    assert not (tmp_path / "passwd").exists()


def test_bad_env_file_line_is_reported(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GOOD=1\nthis is not an assignment\n")
    code, output = run("--env-file", str(env_file))
    assert code == 2 and "line 2 is not KEY=VALUE" in output


def test_example_prints_the_template() -> None:
    code, output = run("--example")
    assert code == 0
    assert parse_env_file(output)["MQTT_INGEST_PASSWORD"] == ""


def test_quoted_values_are_unquoted() -> None:
    assert parse_env_file("A='x y'\nexport B=\"z\"\n# c\n\n") == {"A": "x y", "B": "z"}


def test_environment_fills_what_the_file_lacks() -> None:
    values, generated = resolve_values({}, {"POSTGRES_PASSWORD": "from-environment"}, generate=True)
    assert values["POSTGRES_PASSWORD"] == "from-environment"
    assert "POSTGRES_PASSWORD" not in generated
    with pytest.raises(InitError, match="MQTT_INGEST_PASSWORD is not set"):
        resolve_values({}, {}, generate=False)


def test_rotate_needs_the_env_file() -> None:
    code, output = run("--no-env-file", "--rotate", "MQTT_API_PASSWORD")
    assert code == 2 and "drop --no-env-file" in output


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"\A[A-Z][A-Z0-9_]{0,20}\Z"),
        st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="'\"")),
        max_size=8,
    )
)
def test_env_file_round_trip(extra: dict[str, str]) -> None:
    values = {var.name: var.default or "s3cret" for var in STACK_ENV} | extra
    assert parse_env_file(render_env_file(values)) == values
