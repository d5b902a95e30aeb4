"""Fixtures of the alert tests: a SQLite alert database per test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event


def sqlite_engine(path: Path) -> Engine:
    """A SQLite engine in WAL mode (what a single-machine deployment uses)."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


@contextlib.contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block, whitespace collapsed, in order."""
    statements: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The alert tables' database: a SQLite file in the test's directory."""
    engine = sqlite_engine(tmp_path / "alerts.db")
    yield engine
    engine.dispose()
