"""Every endpoint: the owner (and a granted clinician) get the data; another wearer and an
ungranted clinician get a 404 indistinguishable from a missing resource; roles are enforced."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pytest

from simulator.recording import Recording, write_csv
from storage.metadata import Role
from tests.api.conftest import NOW, World, dead_delivery

Kind = Literal["public", "read", "own", "clinical", "admin", "me", "patients"]
NIGHT = "2026-11-23"


def _csv_upload(tmp_dir: Any) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    path = tmp_dir / "night.csv"
    write_csv(
        path,
        Recording(
            emg_uv=rng.normal(0, 3, size=(4000, 1)),
            emg_rate_hz=1000.0,
            start=NOW - timedelta(days=1),
        ),
    )
    return {"files": {"file": ("night.csv", io.BytesIO(path.read_bytes()), "text/csv")}}


@dataclass(frozen=True)
class Case:
    kind: Kind
    request: Callable[[World, Any], dict[str, Any]] = field(default=lambda w, tmp: {})
    ok: int = 200


CASES: dict[tuple[str, str], Case] = {
    ("get", "/healthz"): Case("public"),
    ("get", "/readyz"): Case("public"),
    ("get", "/metrics"): Case("public"),
    ("get", "/v1/me"): Case("me"),
    ("get", "/v1/me/webhooks"): Case("me"),
    ("post", "/v1/me/webhooks"): Case(
        "me", lambda w, tmp: {"json": {"url": "https://example.org/hook"}}, ok=201
    ),
    ("delete", "/v1/me/webhooks/{webhook_id}"): Case("own", ok=204),
    ("get", "/v1/wearers"): Case("admin"),
    ("post", "/v1/wearers"): Case("admin", lambda w, tmp: {"json": {"name": "Eve"}}, ok=201),
    ("get", "/v1/wearers/{wearer_id}"): Case("read"),
    ("get", "/v1/clinicians"): Case("admin"),
    ("post", "/v1/clinicians"): Case("admin", lambda w, tmp: {"json": {"name": "Dr F"}}, ok=201),
    ("get", "/v1/patients"): Case("patients"),
    ("get", "/v1/wearers/{wearer_id}/grants"): Case("own"),
    ("post", "/v1/wearers/{wearer_id}/grants"): Case(
        "own", lambda w, tmp: {"json": {"clinician_id": "dave"}}, ok=201
    ),
    ("delete", "/v1/wearers/{wearer_id}/grants/{grant_id}"): Case("own"),
    ("get", "/v1/keys"): Case("admin"),
    ("post", "/v1/keys"): Case(
        "admin", lambda w, tmp: {"json": {"role": "wearer", "wearer_id": "bob"}}, ok=201
    ),
    ("delete", "/v1/keys/{key_id}"): Case("admin"),
    ("post", "/v1/devices"): Case(
        "admin",
        lambda w, tmp: {"json": {"device_id": "bob-left", "owner_id": "bob", "site": "left_calf"}},
        ok=201,
    ),
    ("get", "/v1/devices/{device_id}"): Case("read"),
    ("put", "/v1/devices/{device_id}/calibration"): Case(
        "own", lambda w, tmp: {"json": {"mvc_uv": 512.0}}
    ),
    ("get", "/v1/me/devices"): Case("me"),
    ("get", "/v1/wearers/{wearer_id}/devices"): Case("read"),
    ("get", "/v1/me/nights"): Case("me", lambda w, tmp: {"params": {"first": "2026-11-15"}}),
    ("get", "/v1/me/nights/{night}/episodes"): Case("me"),
    ("get", "/v1/me/nights/{night}/picture"): Case("me"),
    ("get", "/v1/wearers/{wearer_id}/nights"): Case(
        "read", lambda w, tmp: {"params": {"first": "2026-11-15"}}
    ),
    ("get", "/v1/wearers/{wearer_id}/nights/{night}/episodes"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/nights/{night}/picture"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/episodes"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/episodes.csv"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/episodes/fhir"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/summary/weekly"): Case("read"),
    ("get", "/v1/wearers/{wearer_id}/page"): Case("read"),
    ("post", "/v1/devices/{device_id}/recordings"): Case(
        "read", lambda w, tmp: _csv_upload(tmp), ok=202
    ),
    ("get", "/v1/devices/{device_id}/recordings/{job_id}"): Case("read"),
    ("get", "/v1/me/red-flags"): Case("me"),
    ("get", "/v1/wearers/{wearer_id}/red-flags"): Case("read"),
    ("post", "/v1/wearers/{wearer_id}/red-flags/evaluate"): Case("clinical"),
    ("get", "/v1/me/webhooks/deliveries"): Case("me"),
    ("get", "/v1/webhooks/deliveries"): Case("admin"),
    ("post", "/v1/webhooks/deliveries/{delivery_id}/requeue"): Case("admin"),
}


def test_every_operation_has_an_access_case(world: World) -> None:
    operations = {
        (method, path)
        for path, ops in world.client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in ops
    }
    assert operations == set(CASES)


def _path(template: str, world: World, tmp_path: Any) -> str:
    values = {
        "wearer_id": "ann",
        "device_id": "ann-left",
        "night": NIGHT,
        "grant_id": world.ids["grant"],
    }
    if "{webhook_id}" in template:
        hook = world.metadata.add_webhook(
            "https://ann.example/hook", owner_role=Role.WEARER, owner_id="ann"
        )
        values["webhook_id"] = hook.webhook_id
    if "{key_id}" in template:
        values["key_id"] = world.metadata.create_key(Role.WEARER, wearer_id="ann").record.key_id
    if "{delivery_id}" in template:
        values["delivery_id"] = dead_delivery(world)
    if "{job_id}" in template:
        job = world.client.post(
            "/v1/devices/ann-left/recordings",
            headers=world.headers("ann"),
            **_csv_upload(tmp_path),
        )
        assert job.status_code == 202, job.text
        values["job_id"] = job.json()["job_id"]
    return template.format(**values)


def _call(world: World, who: str | None, method: str, url: str, case: Case, tmp: Any) -> Any:
    headers = world.headers(who) if who else {}
    return world.client.request(method.upper(), url, headers=headers, **case.request(world, tmp))


@pytest.mark.parametrize(("method", "template"), sorted(CASES), ids=lambda v: str(v))
def test_access(world: World, tmp_path: Any, method: str, template: str) -> None:
    case = CASES[(method, template)]
    url = _path(template, world, tmp_path)
    if case.kind == "public":
        assert _call(world, None, method, url, case, tmp_path).status_code == 200
        return
    assert _call(world, None, method, url, case, tmp_path).status_code == 401
    if case.kind == "admin":
        for who in ("ann", "bob", "carol", "dave"):
            answer = _call(world, who, method, url, case, tmp_path)
            assert answer.status_code == 403, (who, answer.text)
        assert _call(world, "admin", method, url, case, tmp_path).status_code == case.ok
        return
    if case.kind == "clinical":
        for who in ("ann", "bob"):
            answer = _call(world, who, method, url, case, tmp_path)
            assert answer.status_code == 403, (who, answer.text)
        answer = _call(world, "dave", method, url, case, tmp_path)
        assert (answer.status_code, answer.json()) == (404, {"detail": "not found"})
        for who in ("carol", "admin"):
            answer = _call(world, who, method, url, case, tmp_path)
            assert answer.status_code == case.ok, (who, answer.text)
        return
    if case.kind == "patients":
        assert _call(world, "bob", method, url, case, tmp_path).status_code == 403
        assert _call(world, "dave", method, url, case, tmp_path).json()["count"] == 0
        mine = _call(world, "carol", method, url, case, tmp_path).json()["data"]
        assert [p["wearer_id"] for p in mine] == ["ann"]
        return
    if case.kind == "me":
        for who in ("bob", "dave"):
            answer = _call(world, who, method, url, case, tmp_path)
            assert "ann" not in answer.text.lower(), who
        answer = _call(world, "ann", method, url, case, tmp_path)
        assert answer.status_code == case.ok, answer.text
        return
    outsiders = ["bob", "dave"] + (["carol"] if case.kind == "own" else [])
    for who in outsiders:
        answer = _call(world, who, method, url, case, tmp_path)
        assert (answer.status_code, answer.json()) == (404, {"detail": "not found"}), who
    if case.kind == "read" and method == "get":
        answer = _call(world, "carol", method, url, case, tmp_path)
        assert answer.status_code == case.ok, answer.text
    answer = _call(world, "ann", method, url, case, tmp_path)
    assert answer.status_code == case.ok, answer.text
    if method == "get" and answer.headers["content-type"].startswith("application/json"):
        assert "bob" not in answer.text


def test_outsiders_change_nothing(world: World) -> None:
    for who in ("bob", "dave", "carol"):
        world.client.put(
            "/v1/devices/ann-left/calibration", headers=world.headers(who), json={"mvc_uv": 9.0}
        )
        world.client.delete(
            f"/v1/wearers/ann/grants/{world.ids['grant']}", headers=world.headers(who)
        )
    device = world.metadata.device("ann-left")
    assert device is not None and device.mvc_uv == 400.0
    assert world.metadata.has_access("carol", "ann")
