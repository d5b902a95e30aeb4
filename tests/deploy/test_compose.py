"""docker-compose.yml, .env.example and the Dockerfile, checked without a Docker engine: the
services, ports, volumes, health checks and restart policies are there, every CRAMPWATCH_*
variable is a real setting, every secret comes from .env, and the image builds what the
project packages."""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from crampwatch.cli import build_app
from crampwatch.commands.init import STACK_ENV, render_env_example
from crampwatch.settings import load_settings, settings_table
from tests.deploy.mqtt_helpers import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
LONG_RUNNING = ("mosquitto", "influxdb", "postgres", "ingest", "api", "grafana")
APP_SERVICES = ("broker-accounts", "ingest", "api")
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|DATABASE_URL)$")
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {key: str(value) for key, value in env.items()}


def references(text: str) -> list[re.Match[str]]:
    """``${NAME...}`` interpolations, ignoring ``$$`` escapes."""
    return list(REFERENCE.finditer(text.replace("$$", "")))


def compose_spec_errors(document: dict[str, Any]) -> list[str]:
    """Violations of the Compose Specification's JSON schema (as check-jsonschema ships it)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_spec_errors(COMPOSE) == []
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["api"]["restrat"] = "always"
    (error,) = compose_spec_errors(broken)
    assert "'restrat' was unexpected" in error


def test_all_services_present() -> None:
    assert set(SERVICES) == {*LONG_RUNNING, "broker-accounts"}
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert SERVICES["influxdb"]["image"] == "influxdb:2.7"
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana")
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] == "."
        assert SERVICES[name]["image"] == SERVICES["api"]["image"]


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_health_checks_and_restart(service: str) -> None:
    spec = SERVICES[service]
    assert spec["restart"] in ("unless-stopped", "always")
    check = spec["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2
    for key in ("interval", "timeout", "retries"):
        assert key in check


def test_one_shot_account_writer_runs_before_the_broker() -> None:
    accounts = SERVICES["broker-accounts"]
    assert accounts["restart"] == "no"
    assert accounts["command"][0] == "init" and "--no-env-file" in accounts["command"]
    condition = SERVICES["mosquitto"]["depends_on"]["broker-accounts"]["condition"]
    assert condition == "service_completed_successfully"


def test_dependencies_wait_for_health() -> None:
    for service in ("ingest", "api"):
        for dependency in ("mosquitto", "influxdb", "postgres"):
            assert SERVICES[service]["depends_on"][dependency]["condition"] == "service_healthy"


def test_published_ports() -> None:
    def ports(service: str) -> list[str]:
        return [str(p) for p in SERVICES[service].get("ports", [])]

    assert ports("mosquitto") == ["${MQTT_PORT:-1883}:1883"]
    assert ports("api") == ["${API_PORT:-8000}:8000"]
    assert ports("grafana") == ["${GRAFANA_PORT:-3000}:3000"]
    assert ports("influxdb") == ["127.0.0.1:${INFLUXDB_PORT:-8086}:8086"]
    assert ports("postgres") == [] and ports("ingest") == []  # internal only
    assert environment("api")["CRAMPWATCH_API_PORT"] == "8000"
    assert environment("api")["CRAMPWATCH_API_HOST"] == "0.0.0.0"


def test_named_volumes_hold_all_state() -> None:
    declared = set(COMPOSE["volumes"])
    mounts = {name: [str(v) for v in spec.get("volumes", [])] for name, spec in SERVICES.items()}
    used = {m.split(":")[0] for ms in mounts.values() for m in ms if not m.startswith(".")}
    assert used == declared
    assert "mosquitto-data:/mosquitto/data" in mounts["mosquitto"]
    assert "mosquitto-auth:/mosquitto/auth:ro" in mounts["mosquitto"]
    assert "mosquitto-auth:/mosquitto-auth" in mounts["broker-accounts"]
    assert "mosquitto-auth:/mosquitto-auth" in mounts["api"]
    assert "influxdb-data:/var/lib/influxdb2" in mounts["influxdb"]
    assert "postgres-data:/var/lib/postgresql/data" in mounts["postgres"]
    assert "grafana-data:/var/lib/grafana" in mounts["grafana"]
    assert "ingest-data:/data" in mounts["ingest"] and "api-data:/data" in mounts["api"]
    # Bind mounts are read-only config from the repository, and exist.
    for ms in mounts.values():
        for mount in ms:
            if mount.startswith("."):
                source, _, rest = mount.partition(":")
                assert rest.endswith(":ro"), mount
                assert (ROOT / source).exists(), mount


def test_mosquitto_config_paths_match_the_mounts() -> None:
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    options = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert options["allow_anonymous"] == "false"
    assert options["persistence"] == "true"
    assert options["password_file"] == "/mosquitto/auth/passwd"
    assert options["acl_file"] == "/mosquitto/auth/acl"
    assert options["persistence_location"] == "/mosquitto/data/"
    assert options["listener"] == "1883"
    assert SERVICES["mosquitto"]["command"] == ["/bin/sh", "/mosquitto/config/run.sh"]
    api = environment("api")
    assert api["CRAMPWATCH_BROKER_PASSWORD_FILE"] == "/mosquitto-auth/passwd"
    assert api["CRAMPWATCH_BROKER_ACL_FILE"] == "/mosquitto-auth/acl"
    assert SERVICES["broker-accounts"]["command"][-1] == "/mosquitto-auth"


def test_every_crampwatch_variable_is_a_setting() -> None:
    known = {name for name, _, _ in settings_table()}
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\bCRAMPWATCH_[A-Z0-9_]+", text))
    used.discard("CRAMPWATCH_INGEST_WORKER_INDEX")  # set per replica by crampwatch-replica
    assert "CRAMPWATCH_INGEST_WORKER_INDEX" in known
    assert used, "the compose file configures nothing?"
    assert used <= known, f"not settings: {sorted(used - known)}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_environment_loads_as_settings(service: str) -> None:
    """The service's environment, with .env values filled in, is accepted by load_settings."""
    values = {var.name: var.default or "generated-secret" for var in STACK_ENV}

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group("name"), match.group("arg"))

    env = {key: REFERENCE.sub(fill, value) for key, value in environment(service).items()}
    env["CRAMPWATCH_INGEST_WORKER_INDEX"] = "0"
    settings = load_settings(None, env)
    if service == "broker-accounts":
        return
    assert settings.broker.url == "mqtt://mosquitto:1883"
    assert settings.store.backend == "influx"
    assert settings.store.influx_url == "http://influxdb:8086"
    assert settings.api.database_url is not None
    assert settings.api.database_url.startswith("postgresql+psycopg://crampwatch:")
    assert settings.broker.username in ("_ingest", "_api")


def test_secrets_come_only_from_dot_env() -> None:
    """Every secret-looking value is a required ``${NAME:?...}`` of a variable init generates."""
    generated = {var.name for var in STACK_ENV if var.secret}
    for name in SERVICES:
        for key, value in environment(name).items():
            if not SECRET_NAME.search(key):
                continue
            refs = references(value)
            assert refs, f"{name}.{key} holds a literal secret"
            for ref in refs:
                if SECRET_NAME.search(ref.group("name")):
                    assert ref.group("name") in generated, f"{name}.{key}"
                    assert ref.group("op") == ":?", f"{name}.{key} must be required"
            literal = REFERENCE.sub("", value)
            assert not re.search(r"[A-Za-z0-9_-]{16,}", literal), f"{name}.{key}: {literal}"


def test_dot_env_example_lists_every_variable_and_no_secret() -> None:
    text = (ROOT / ".env.example").read_text()
    assert text == render_env_example(), "regenerate: crampwatch init --example > .env.example"
    example = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    used = {m.group("name") for m in references((ROOT / "docker-compose.yml").read_text())}
    assert used == set(example), f"only in compose: {used - set(example)}"
    for var in STACK_ENV:
        assert example[var.name] == ("" if var.secret else var.default)


def test_scaled_ingest_derives_worker_index() -> None:
    ingest = SERVICES["ingest"]
    env = environment("ingest")
    assert "container_name" not in ingest and "hostname" not in ingest
    assert ingest["entrypoint"] == ["crampwatch-replica", "crampwatch"]
    assert ingest["command"] == ["serve", "--no-api"]
    assert str(ingest["deploy"]["replicas"]) == "${INGEST_REPLICAS:-1}"
    assert env["CRAMPWATCH_INGEST_WORKER_COUNT"] == "${INGEST_REPLICAS:-1}"
    assert "CRAMPWATCH_INGEST_WORKER_INDEX" not in env
    assert env["REPLICA_NAME_PREFIX"] == "${COMPOSE_PROJECT_NAME:-crampwatch}-ingest-"
    assert COMPOSE["name"] == "${COMPOSE_PROJECT_NAME:-crampwatch}"
    assert env["REPLICA_OWN_DATA_DIR"] == "true"


def test_influx_init_script_and_grafana_login_match() -> None:
    path = ROOT / "deploy" / "influxdb" / "init" / "10-crampwatch.sh"
    assert os.access(path, os.X_OK)  # the image runs init scripts with run-parts: executables only
    script = path.read_text()
    assert "influx v1 dbrp create" in script and "--read-bucket" in script
    assert "--write-bucket" not in script  # Grafana reads only
    influx = environment("influxdb")
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for name in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert f"DOCKER_INFLUXDB_INIT_{name}" in influx
    assert influx["GRAFANA_INFLUX_PASSWORD"] == environment("grafana")["GRAFANA_INFLUX_PASSWORD"]
    assert (
        influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
        == (environment("api")["CRAMPWATCH_STORE_INFLUX_TOKEN"])
    )


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    stages = dockerfile_stages()
    text = (ROOT / "Dockerfile").read_text()
    assert len(stages) >= 2
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.fullmatch(r"python:3\.11-slim(-\w+)?", base.group(1))
    final = stages[-1]
    assert final[0] == ("FROM", "${PYTHON_IMAGE} AS runtime")
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert not re.search(r"apt-get install|build-essential|gcc|pip install", runs)
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    args = dict(rest.split("=", 1) for keyword, rest in final if keyword == "ARG" and "=" in rest)
    assert users[-1] == "${APP_UID}:${APP_GID}"
    assert args["APP_UID"] != "0" and args["APP_GID"] == "1883"  # the mosquitto image's group
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entry == ['["crampwatch"]']
    assert any(k == "COPY" and rest.startswith("--from=build /opt/venv") for k, rest in final)


def test_dockerfile_copies_every_packaged_module_and_script() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    build = dockerfile_stages()[0]
    copied = set()
    for keyword, rest in build + dockerfile_stages()[-1]:
        if keyword == "COPY" and "--from=" not in rest:
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            copied.update(Path(w).as_posix() for w in words[:-1])
    assert packages <= copied, f"not copied: {packages - copied}"
    assert {"pyproject.toml", "README.md"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    # The scripts compose runs in the app image exist under the names it uses.
    assert "deploy/replica_entrypoint.py" in copied
    assert "/usr/local/bin/crampwatch-replica" in (ROOT / "Dockerfile").read_text()
    assert "/usr/local/bin/crampwatch-worker-health" in (ROOT / "Dockerfile").read_text()


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", "crampwatch-data"} <= ignored
    copied_roots = {"deploy", "pyproject.toml", "README.md", "crampwatch", "ingest"}
    assert not copied_roots & ignored


def test_app_service_commands_exist_in_the_cli() -> None:
    """The commands compose runs are real ``crampwatch`` commands with those options."""
    group = typer.main.get_command(build_app())
    commands = getattr(group, "commands", {})
    for service in APP_SERVICES:
        name, *args = SERVICES[service]["command"]
        command = commands.get(name)
        assert command is not None, f"{service}: crampwatch {name} does not exist"
        options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        for arg in args:
            if arg.startswith("--"):
                assert arg in options, f"{service}: crampwatch {name} has no {arg}"


def test_serve_services_stop_with_sigint() -> None:
    """``crampwatch serve`` shuts its stages down cleanly on Ctrl-C (SIGINT), not on SIGTERM."""
    for service in ("ingest", "api"):
        assert SERVICES[service]["command"][0] == "serve"
        assert SERVICES[service]["stop_signal"] == "SIGINT"
        assert SERVICES[service]["init"] is True  # tini forwards the signal to crampwatch
