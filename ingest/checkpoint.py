"""Durable worker checkpoint: detector snapshots, stream positions and held frames in SQLite.

Everything a worker must remember to recognise redelivered frames after a crash is written in
ONE transaction per processed batch, before the batch's MQTT messages are acknowledged: a
crash before the commit means the broker redelivers and the worker redoes the same work from
the previous checkpoint; a crash after it means the redelivered messages are duplicates.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.protocol import Frame, StreamKind, Transport, decode_binary, encode_binary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device (
    device_id TEXT PRIMARY KEY,
    positions TEXT NOT NULL,
    detector BLOB
);
CREATE TABLE IF NOT EXISTS pending (
    device_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    transport TEXT NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY (device_id, kind, seq)
);
"""


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be opened, read or written."""


@dataclass(frozen=True)
class DeviceCheckpoint:
    """What was committed for one device.

    Attributes
    ----------
    positions : dict
        :meth:`ingest.sequencing.DeviceSequencer.positions` as committed.
    detector : bytes or None
        The detector's ``snapshot()``; None when the device has no open detector.
    pending : list of (Frame, Transport)
        Frames received and acknowledged but not yet pushed to the detector.
    """

    device_id: str
    positions: dict[str, Any]
    detector: bytes | None
    pending: list[tuple[Frame, Transport]] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceUpdate:
    """One device's changes in a commit."""

    device_id: str
    positions: dict[str, Any]
    detector: bytes | None
    add_pending: Sequence[tuple[Frame, Transport]] = ()
    remove_pending: Sequence[tuple[StreamKind, int]] = ()


class Checkpoint:
    """The checkpoint file of one worker (``ingest-{worker_index}.sqlite`` in the data dir).

    Parameters
    ----------
    path : Path
        SQLite file; created with its directory when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CheckpointError(f"cannot open checkpoint {path}: {exc}") from exc

    def load(self, device_id: str) -> DeviceCheckpoint | None:
        """The committed state of one device, or None when it was never committed."""
        try:
            row = self._db.execute(
                "SELECT positions, detector FROM device WHERE device_id = ?", (device_id,)
            ).fetchone()
            if row is None:
                return None
            rows = self._db.execute(
                "SELECT transport, frame FROM pending WHERE device_id = ? ORDER BY kind, seq",
                (device_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc
        pending = [(decode_binary(bytes(blob)), Transport(t)) for t, blob in rows]
        return DeviceCheckpoint(device_id, json.loads(row[0]), row[1], pending)

    def device_ids(self) -> list[str]:
        """Every device with a committed state."""
        try:
            return [r[0] for r in self._db.execute("SELECT device_id FROM device ORDER BY 1")]
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc

    def commit(self, updates: Sequence[DeviceUpdate]) -> None:
        """Write every update in one transaction (all or nothing)."""
        if not updates:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for u in updates:
                    db.execute(
                        "INSERT INTO device (device_id, positions, detector) VALUES (?, ?, ?) "
                        "ON CONFLICT(device_id) DO UPDATE SET positions = excluded.positions, "
                        "detector = excluded.detector",
                        (u.device_id, json.dumps(u.positions), u.detector),
                    )
                    db.executemany(
                        "DELETE FROM pending WHERE device_id = ? AND kind = ? AND seq = ?",
                        [(u.device_id, int(kind), seq) for kind, seq in u.remove_pending],
                    )
                    db.executemany(
                        "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?)",
                        [
                            (u.device_id, int(f.kind), f.seq, str(t), encode_binary(f))
                            for f, t in u.add_pending
                        ],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot write checkpoint {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        self._db.close()
