"""The worker checkpoint: one transaction per commit, held frames survive, reload is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.checkpoint import Checkpoint, CheckpointError, DeviceUpdate
from ingest.protocol import StreamKind, Transport, make_frame

T0 = 1_790_000_000_000_000


def frame(seq: int, kind: StreamKind = StreamKind.EMG):  # type: ignore[no-untyped-def]
    if kind is StreamKind.EMG:
        return make_frame(kind, 1000, T0 + seq * 10**6, seq, np.arange(1000, dtype=np.float32))
    return make_frame(kind, 50, T0 + seq * 10**6, seq, np.ones((50, 3), dtype=np.float32))


def test_committed_state_and_held_frames_reload_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ingest-0.sqlite"
    checkpoint = Checkpoint(path)
    positions = {"live_horizon_us": T0, "streams": {"emg": {"next_seq": 3}}}
    held = [(frame(5), Transport.LIVE), (frame(4, StreamKind.ACC), Transport.SYNC)]
    checkpoint.commit([DeviceUpdate("dev-1", positions, b"\x00snap", add_pending=held)])
    checkpoint.commit(
        [DeviceUpdate("dev-1", positions, b"snap2", remove_pending=[(StreamKind.EMG, 5)])]
    )
    checkpoint.close()
    reopened = Checkpoint(path)
    saved = reopened.load("dev-1")
    assert saved is not None
    assert saved.positions == positions and saved.detector == b"snap2"
    assert saved.pending == [(frame(4, StreamKind.ACC), Transport.SYNC)]
    assert reopened.load("dev-2") is None
    assert reopened.device_ids() == ["dev-1"]
    reopened.close()


def test_a_failing_commit_changes_nothing(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "ingest-0.sqlite")
    checkpoint.commit(
        [DeviceUpdate("dev-1", {"n": 1}, b"a", add_pending=[(frame(1), Transport.LIVE)])]
    )
    bad = DeviceUpdate("dev-2", {"n": 1}, object())  # type: ignore[arg-type]  # SQLite refuses it
    with pytest.raises(CheckpointError):
        checkpoint.commit(
            [DeviceUpdate("dev-1", {"n": 2}, b"c", remove_pending=[(StreamKind.EMG, 1)]), bad]
        )
    saved = checkpoint.load("dev-1")
    assert saved is not None and saved.positions == {"n": 1} and saved.detector == b"a"
    assert len(saved.pending) == 1 and checkpoint.load("dev-2") is None
    checkpoint.close()


def test_replay_log_grows_between_snapshots_and_a_new_snapshot_replaces_it(
    tmp_path: Path,
) -> None:
    checkpoint = Checkpoint(tmp_path / "ingest-0.sqlite")
    checkpoint.commit([DeviceUpdate("dev-1", {"n": 1}, b"snap1")])
    checkpoint.commit(
        [
            DeviceUpdate(
                "dev-1", {"n": 2}, None, snapshot=False, replay=[frame(0), frame(0, StreamKind.ACC)]
            )
        ]
    )
    checkpoint.commit(
        [DeviceUpdate("dev-1", {"n": 3}, None, snapshot=False, replay=[frame(1)], replay_from=2)]
    )
    saved = checkpoint.load("dev-1")
    assert saved is not None and saved.positions == {"n": 3} and saved.detector == b"snap1"
    assert saved.replay == [frame(0), frame(0, StreamKind.ACC), frame(1)]
    checkpoint.commit([DeviceUpdate("dev-1", {"n": 4}, b"snap2")])
    saved = checkpoint.load("dev-1")
    assert saved is not None and saved.detector == b"snap2" and saved.replay == []
    checkpoint.close()


def test_a_failing_commit_leaves_the_replay_log_as_it_was(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "ingest-0.sqlite")
    checkpoint.commit([DeviceUpdate("dev-1", {"n": 1}, b"snap")])
    checkpoint.commit([DeviceUpdate("dev-1", {"n": 2}, None, snapshot=False, replay=[frame(0)])])
    bad = DeviceUpdate("dev-2", {"n": 1}, object())  # type: ignore[arg-type]
    with pytest.raises(CheckpointError):
        checkpoint.commit(
            [
                DeviceUpdate(
                    "dev-1", {"n": 3}, None, snapshot=False, replay=[frame(1)], replay_from=1
                ),
                bad,
            ]
        )
    saved = checkpoint.load("dev-1")
    assert saved is not None and saved.positions == {"n": 2} and saved.replay == [frame(0)]
    checkpoint.close()


def test_an_update_is_either_a_snapshot_or_a_log_append() -> None:
    with pytest.raises(ValueError, match="empty replay log"):
        DeviceUpdate("dev-1", {}, b"snap", replay=[frame(0)])
    with pytest.raises(ValueError, match="snapshot=True"):
        DeviceUpdate("dev-1", {}, b"snap", snapshot=False)


def test_a_commit_refuses_two_updates_of_one_device(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "ingest-0.sqlite")
    with pytest.raises(ValueError, match="one update per device"):
        checkpoint.commit([DeviceUpdate("dev-1", {}, None), DeviceUpdate("dev-1", {}, None)])
    assert checkpoint.device_ids() == []
    checkpoint.close()
