"""Durable worker checkpoint: detector snapshots, replay logs, stream positions and held frames
in SQLite.

Everything a worker must remember to recognise redelivered frames after a crash is written in
ONE transaction per processed batch, before the batch's MQTT messages are acknowledged: a
crash before the commit means the broker redelivers and the worker redoes the same work from
the previous checkpoint; a crash after it means the redelivered messages are duplicates.

A detector is not snapshotted in every commit (a snapshot is tens of kB): between snapshots the
frames pushed into it are appended to the device's **replay log** in the same transaction as
the positions. The committed detector state is the snapshot followed by its log, replayed in
order; a new snapshot replaces the log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.protocol import Frame, StreamKind, Transport, decode_binary

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
CREATE TABLE IF NOT EXISTS replay (
    device_id TEXT NOT NULL,
    ord INTEGER NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY (device_id, ord)
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
    replay : list of Frame
        Frames pushed into the detector after its snapshot, in push order: restore the
        snapshot and push these to get the committed detector state.
    """

    device_id: str
    positions: dict[str, Any]
    detector: bytes | None
    pending: list[tuple[Frame, Transport]] = field(default_factory=list)
    replay: list[Frame] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceUpdate:
    """One device's changes in a commit.

    With ``snapshot`` True, ``detector`` replaces the stored snapshot (None: no open detector)
    and the replay log restarts empty; with ``snapshot`` False the stored snapshot stays and
    ``replay`` is appended to its log at positions ``replay_from``, ``replay_from + 1``, ...
    """

    device_id: str
    positions: dict[str, Any]
    detector: bytes | None
    add_pending: Sequence[tuple[Frame, Transport]] = ()
    remove_pending: Sequence[tuple[StreamKind, int]] = ()
    snapshot: bool = True
    replay: Sequence[Frame] = ()
    replay_from: int = 0

    def __post_init__(self) -> None:
        if self.snapshot and self.replay:
            raise ValueError("a new snapshot starts an empty replay log")
        if not self.snapshot and self.detector is not None:
            raise ValueError("detector bytes are only written with snapshot=True")


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
            logged = self._db.execute(
                "SELECT frame FROM replay WHERE device_id = ? ORDER BY ord", (device_id,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc
        pending = [(decode_binary(bytes(blob)), Transport(t)) for t, blob in rows]
        replay = [decode_binary(bytes(blob)) for (blob,) in logged]
        return DeviceCheckpoint(device_id, json.loads(row[0]), row[1], pending, replay)

    def device_ids(self) -> list[str]:
        """Every device with a committed state."""
        try:
            return [r[0] for r in self._db.execute("SELECT device_id FROM device ORDER BY 1")]
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc

    def commit(self, updates: Sequence[DeviceUpdate]) -> None:
        """Write every update (at most one per device) in one transaction (all or nothing)."""
        if not updates:
            return
        if len({u.device_id for u in updates}) != len(updates):
            raise ValueError("a commit holds at most one update per device")
        snapshots = [
            (u.device_id, json.dumps(u.positions), u.detector) for u in updates if u.snapshot
        ]
        positions = [(u.device_id, json.dumps(u.positions)) for u in updates if not u.snapshot]
        logged = [
            (u.device_id, u.replay_from + i, f.wire)
            for u in updates
            for i, f in enumerate(u.replay)
        ]
        released = [
            (u.device_id, int(kind), seq) for u in updates for kind, seq in u.remove_pending
        ]
        held = [
            (u.device_id, int(f.kind), f.seq, str(t), f.wire)
            for u in updates
            for f, t in u.add_pending
        ]
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO device (device_id, positions, detector) VALUES (?, ?, ?) "
                    "ON CONFLICT(device_id) DO UPDATE SET positions = excluded.positions, "
                    "detector = excluded.detector",
                    snapshots,
                )
                db.executemany(
                    "DELETE FROM replay WHERE device_id = ?", [(row[0],) for row in snapshots]
                )
                db.executemany(
                    "INSERT INTO device (device_id, positions) VALUES (?, ?) "
                    "ON CONFLICT(device_id) DO UPDATE SET positions = excluded.positions",
                    positions,
                )
                db.executemany("INSERT OR REPLACE INTO replay VALUES (?, ?, ?)", logged)
                db.executemany(
                    "DELETE FROM pending WHERE device_id = ? AND kind = ? AND seq = ?", released
                )
                db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?)", held)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot write checkpoint {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        self._db.close()
