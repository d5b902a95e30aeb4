"""The worker checkpoint: one transaction per commit, held frames survive, reload is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.checkpoint import Checkpoint, DeviceUpdate
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
    bad = DeviceUpdate("dev-2", {"n": object()}, b"b")  # not JSON: fails inside the transaction
    with pytest.raises(TypeError):
        checkpoint.commit(
            [DeviceUpdate("dev-1", {"n": 2}, b"c", remove_pending=[(StreamKind.EMG, 1)]), bad]
        )
    saved = checkpoint.load("dev-1")
    assert saved is not None and saved.positions == {"n": 1} and saved.detector == b"a"
    assert len(saved.pending) == 1 and checkpoint.load("dev-2") is None
    checkpoint.close()
