"""The durable spool: order, bounds, restarts and torn tails."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.spool import HEADER, Spool, SpoolCorrupt, SpoolFull, SpoolLocked

payloads = st.binary(min_size=0, max_size=300)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), payloads),
        st.tuples(st.just("consume"), st.integers(1, 5)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_spool_returns_what_was_appended_in_order_across_reopens(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(Path(directory), max_bytes=1 << 20, segment_bytes=512)
        waiting: list[bytes] = []
        for op, arg in ops:
            if op == "append":
                spool.append(arg)
                waiting.append(arg)
            elif op == "consume":
                batch = spool.peek(arg)
                assert [r.payload for r in batch] == waiting[: len(batch)]
                assert len(batch) == min(arg, len(waiting))
                spool.consume(batch)
                del waiting[: len(batch)]
            else:
                spool.close()
                spool = Spool(Path(directory), max_bytes=1 << 20, segment_bytes=512)
            status = spool.status()
            assert status.records == len(waiting) == len(spool)
            assert status.bytes == sum(HEADER.size + len(p) for p in waiting)
        assert [r.payload for r in spool.peek(10_000)] == waiting
        if not waiting:
            assert len(list(Path(directory).glob("*.spool"))) <= 1
        spool.close()


def test_append_refuses_to_pass_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    record_bytes = HEADER.size + 100
    for _ in range(1000 // record_bytes):
        spool.append(b"x" * 100)
    with pytest.raises(SpoolFull, match="1000-byte bound"):
        spool.append(b"x" * 100)
    assert len(spool) == 8 and spool.status().bytes == 8 * record_bytes
    spool.consume(spool.peek(1))
    spool.append(b"y" * 100)
    assert len(spool) == 8


def test_torn_last_record_is_cut_off_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"first", appended_us=1)
    spool.append(b"second", appended_us=2)
    segment = next(tmp_path.glob("*.spool"))
    size = segment.stat().st_size
    with segment.open("r+b") as handle:
        handle.truncate(size - 3)
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert [r.payload for r in reopened.peek(10)] == [b"first"]
    assert reopened.status().oldest_appended_us == 1
    reopened.append(b"third")
    reopened.close()
    assert [r.payload for r in Spool(tmp_path, 1 << 20).peek(10)] == [b"first", b"third"]


def test_damage_in_an_older_segment_is_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    for n in range(6):
        spool.append(bytes([n]) * 50)
    first = sorted(tmp_path.glob("*.spool"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    spool.close()
    with pytest.raises(SpoolCorrupt, match="damaged"):
        Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)


def test_a_spool_directory_is_used_by_one_spool_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"mine")
    with pytest.raises(SpoolLocked, match="its own spool directory"):
        Spool(tmp_path, max_bytes=1 << 20)
    spool.close()
    assert [r.payload for r in Spool(tmp_path, max_bytes=1 << 20).peek(5)] == [b"mine"]
