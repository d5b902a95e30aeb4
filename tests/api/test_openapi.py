"""Property-based run of every documented operation: no input makes the API fail with a 5xx,
and the schema documents every operation with a summary and a response example or model."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import World


@pytest.mark.slow
def test_no_input_causes_a_server_error(world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[tuple[str, str, int, str]] = []
    statuses: list[int] = []

    for operation in operations:

        @settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            for who in ("admin", "ann"):
                response = case.call(headers=world.headers(who))
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        (case.method, case.formatted_path, response.status_code, response.text)
                    )

        check()
    assert failures == []
    assert len(statuses) >= 2 * len(operations)
    assert any(200 <= code < 300 for code in statuses) and 422 in statuses


def test_every_operation_is_documented(world: World) -> None:
    spec = world.client.app.openapi()  # type: ignore[attr-defined]
    for path, operations in spec["paths"].items():
        assert path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics")
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert any(code.startswith("2") for code in operation["responses"]), (method, path)
            if path.startswith("/v1/"):
                assert operation.get("security"), (method, path)
    examples = [
        name
        for name, component in spec["components"]["schemas"].items()
        if component.get("examples")
    ]
    assert {"EpisodePublic", "NightPublic", "WeekPublic", "DevicePublic"} <= set(examples)
