"""Open the configured store: the composition root maps settings to these parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from storage.base import Store

SQLITE_FILE = "results.sqlite3"
SPOOL_DIR = "influx-spool"


def open_store(backend: Literal["sqlite", "influx"], data_dir: Path, **options: Any) -> Store:
    """Build a store.

    Parameters
    ----------
    backend : {"sqlite", "influx"}
        ``sqlite``: ``<data_dir>/results.sqlite3``. ``influx``: :class:`~storage.influx.InfluxStore`
        with ``options`` (``url`` and ``database`` required); its spool defaults to
        ``<data_dir>/influx-spool``.
    data_dir : Path
        Local state directory (created if missing).
    **options
        Keyword arguments of the chosen store's constructor.

    Raises
    ------
    ValueError
        Unknown backend or missing/unknown options.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        from storage.sqlite import SqliteStore

        return SqliteStore(data_dir / SQLITE_FILE, **options)
    if backend == "influx":
        from storage.influx import InfluxStore

        missing = {"url", "database"} - set(options)
        if missing:
            raise ValueError(f"the influx store needs option(s) {sorted(missing)}")
        options.setdefault("spool_dir", data_dir / SPOOL_DIR)
        return InfluxStore(**options)
    raise ValueError(f"unknown store backend {backend!r}; use 'sqlite' or 'influx'")
