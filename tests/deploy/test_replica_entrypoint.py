"""deploy/replica_entrypoint.py (worker index of a scaled Compose replica) and
deploy/worker_healthcheck.py (is this worker online at the broker?)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from crampwatch.settings import load_settings
from crampwatch.wiring import broker_config
from ingest.broker_auth import add_service_account
from ingest.intake import STATUS_TOPIC
from tests.deploy.mqtt_helpers import ROOT, connect, load_script, start_broker

SCRIPT = ROOT / "deploy" / "replica_entrypoint.py"
HEALTH_SCRIPT = ROOT / "deploy" / "worker_healthcheck.py"


replica = load_script("replica_entrypoint.py")
health = load_script("worker_healthcheck.py")


def compose_dns(replicas: int, project: str = "crampwatch") -> Callable[[str], set[str]]:
    """Docker's DNS on a Compose network: ``<project>-ingest-<n>`` -> that replica's address."""
    table = {f"{project}-ingest-{n}": {f"172.18.0.{10 + n}"} for n in range(1, replicas + 1)}
    return lambda name: table.get(name, set())


BASE = {"CRAMPWATCH_INGEST_WORKER_COUNT": "3", "REPLICA_NAME_PREFIX": "crampwatch-ingest-"}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_replica_n_gets_index_n_minus_1(n: int) -> None:
    env = replica.derive_environment(BASE, {f"172.18.0.{10 + n}"}, compose_dns(3), 0.0)
    assert env["CRAMPWATCH_INGEST_WORKER_INDEX"] == str(n - 1)
    assert env["CRAMPWATCH_INGEST_WORKER_COUNT"] == "3"


def test_every_replica_gets_a_distinct_index() -> None:
    dns = compose_dns(5)
    env = {**BASE, "CRAMPWATCH_INGEST_WORKER_COUNT": "5"}
    indexes = [
        replica.derive_environment(env, {f"172.18.0.{10 + n}"}, dns, 0.0)[
            "CRAMPWATCH_INGEST_WORKER_INDEX"
        ]
        for n in range(1, 6)
    ]
    assert sorted(indexes) == ["0", "1", "2", "3", "4"]


def test_explicit_index_is_kept() -> None:
    env = {**BASE, "CRAMPWATCH_INGEST_WORKER_INDEX": "2"}
    assert replica.derive_environment(env, set(), compose_dns(0), 0.0) == env


def test_replica_beyond_the_count_says_what_to_set() -> None:
    with pytest.raises(replica.ReplicaError, match=r"replica 4 but .*INGEST_REPLICAS=4"):
        replica.derive_environment(BASE, {"172.18.0.14"}, compose_dns(4), 0.0)


def test_wrong_project_name_times_out_with_a_hint() -> None:
    sleeps: list[float] = []
    with pytest.raises(replica.ReplicaError, match="COMPOSE_PROJECT_NAME"):
        replica.derive_environment(
            BASE, {"172.18.0.11"}, compose_dns(3, project="other"), 0.0, sleeps.append
        )


def test_waits_until_dns_knows_the_container() -> None:
    calls = {"n": 0}
    dns = compose_dns(3)

    def late_dns(name: str) -> set[str]:
        calls["n"] += 1
        return dns(name) if calls["n"] > 40 else set()

    env = replica.derive_environment(BASE, {"172.18.0.12"}, late_dns, 60.0, lambda _s: None)
    assert env["CRAMPWATCH_INGEST_WORKER_INDEX"] == "1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REPLICA_NAME_PREFIX": "x-"}, "must be a positive integer"),
        ({**BASE, "CRAMPWATCH_INGEST_WORKER_COUNT": "0"}, "must be a positive integer"),
        ({"CRAMPWATCH_INGEST_WORKER_COUNT": "2"}, "REPLICA_NAME_PREFIX"),
    ],
)
def test_bad_configuration_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(replica.ReplicaError, match=message):
        replica.derive_environment(env, {"172.18.0.11"}, compose_dns(3), 0.0)


def test_own_data_dir_per_worker() -> None:
    env = {
        "CRAMPWATCH_INGEST_WORKER_INDEX": "2",
        "CRAMPWATCH_DATA_DIR": "/data/",
        "REPLICA_OWN_DATA_DIR": "true",
    }
    assert replica.with_data_dir(env)["CRAMPWATCH_DATA_DIR"] == "/data/worker-2"
    env["REPLICA_OWN_DATA_DIR"] = ""
    assert replica.with_data_dir(env)["CRAMPWATCH_DATA_DIR"] == "/data/"


def test_script_execs_the_command_with_the_index(tmp_path: Path) -> None:
    """Run as a process: the command sees the index and the per-worker data dir."""
    index_file = tmp_path / "index"
    env = {
        **os.environ,
        "CRAMPWATCH_INGEST_WORKER_INDEX": "1",
        "CRAMPWATCH_DATA_DIR": "/data",
        "REPLICA_OWN_DATA_DIR": "true",
        "REPLICA_INDEX_FILE": str(index_file),
    }
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), sys.executable, "-c", show],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["CRAMPWATCH_INGEST_WORKER_INDEX"] == "1"
    assert seen["CRAMPWATCH_DATA_DIR"] == "/data/worker-1"
    assert index_file.read_text() == "1\n"


def test_script_without_a_way_to_derive_exits_78() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRAMPWATCH_", "REPLICA_"))}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "true"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78
    assert "CRAMPWATCH_INGEST_WORKER_COUNT" in result.stderr


@pytest.mark.integration
def test_worker_health_follows_the_retained_status(tmp_path: Path, auth_dir: Path) -> None:
    password = add_service_account(auth_dir / "passwd", auth_dir / "acl", "_ingest")
    broker = start_broker(tmp_path, auth_dir)
    env = {
        "CRAMPWATCH_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}",
        "CRAMPWATCH_BROKER_USERNAME": "_ingest",
        "CRAMPWATCH_BROKER_PASSWORD": password,
        "CRAMPWATCH_BROKER_CLIENT_ID": "crampwatch-ingest",
        "CRAMPWATCH_INGEST_WORKER_INDEX": "2",
    }
    topic = "crampwatch/v1/_workers/crampwatch-ingest-2/status"
    try:
        with pytest.raises(health.HealthError, match="no retained status"):
            health.worker_state(env, timeout_s=0.5)
        worker = connect(broker.port, "_ingest", password)
        for state in ("online", "offline"):
            worker.client.publish(topic, json.dumps({"state": state}), 1, True).wait_for_publish(5)
            assert health.worker_state(env) == state
        worker.close()
        with pytest.raises(health.HealthError, match="Not authorized"):
            health.worker_state({**env, "CRAMPWATCH_BROKER_PASSWORD": "wrong"}, timeout_s=2)
        result = subprocess.run(
            [sys.executable, str(HEALTH_SCRIPT)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1 and "'offline'" in result.stderr
    finally:
        broker.stop()


def test_health_check_reads_the_topic_the_worker_publishes() -> None:
    """Same worker name and status topic as ``crampwatch ingest`` derives from the settings."""
    env = {
        "CRAMPWATCH_BROKER_URL": "mqtt://mosquitto:1883",
        "CRAMPWATCH_BROKER_CLIENT_ID": "crampwatch-ingest",
        "CRAMPWATCH_INGEST_WORKER_COUNT": "3",
        "CRAMPWATCH_INGEST_WORKER_INDEX": "2",
    }
    settings = load_settings(None, env)
    worker = broker_config(settings, settings.ingest.worker_index)
    assert health.worker_name(env) == worker.client_id
    assert health.STATUS_TOPIC.format(worker=worker.client_id) == STATUS_TOPIC.format(
        worker=worker.client_id
    )


def test_missing_replicas_are_named() -> None:
    assert replica.missing_replicas("crampwatch-ingest-", 3, compose_dns(3)) == []
    assert replica.missing_replicas("crampwatch-ingest-", 3, compose_dns(2)) == [
        "crampwatch-ingest-3"
    ]
