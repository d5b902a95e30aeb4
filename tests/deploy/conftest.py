"""Fixtures of the deployment tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.mqtt_helpers import make_auth_dir


@pytest.fixture
def auth_dir() -> Iterator[Path]:
    """A broker-readable directory for password and ACL files, removed afterwards."""
    path = make_auth_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
