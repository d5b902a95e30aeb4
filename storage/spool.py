"""A durable, ordered, size-bounded local spool for writes the database could not take yet.

Records are appended to segment files (``<seq>.spool``) and ``fsync``-ed before
:meth:`Spool.append` returns, so a spooled write survives a crash or power cut. Each record is
``header | payload``, the header being payload length, CRC-32 of payload and append time::

    <I  payload bytes     <I  crc32(payload)     <q  appended_us (wall clock, µs)

Consumed records are tracked by a cursor file (``cursor``: ``<seq> <offset>``) replaced
atomically after every :meth:`Spool.consume`; segments behind the cursor are deleted. A record
delivered just before a crash, but not yet consumed, is replayed after the restart: the payloads
must therefore be idempotent (InfluxDB points with the same series key and timestamp are).
A torn record at the end of the newest segment (a crash during an append, before it returned)
is cut off when the spool is opened.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from storage.base import StoreError, StoreUnavailable

HEADER: Final = struct.Struct("<IIq")
SEGMENT_BYTES: Final = 16 * 1024 * 1024
MAX_RECORD_BYTES: Final = 256 * 1024 * 1024
_SUFFIX: Final = ".spool"


class SpoolCorrupt(StoreError):
    """A spool segment other than the newest one fails its checksum (disk damage)."""


class SpoolLocked(StoreUnavailable):
    """Another process (or store) has this spool directory open."""


class SpoolFull(StoreUnavailable):
    """The spool would grow beyond its bound: the caller must stop accepting writes."""


@dataclass(frozen=True)
class SpoolRecord:
    """One spooled payload and where it sits."""

    seq: int
    offset: int
    next_offset: int
    appended_us: int
    payload: bytes


@dataclass(frozen=True)
class SpoolStatus:
    """How much waits in the spool."""

    records: int
    bytes: int
    max_bytes: int
    oldest_appended_us: int | None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only durable queue of byte payloads, read back in order.

    Parameters
    ----------
    directory : Path
        Created if missing; holds the segments and the cursor. One open spool at a time:
        a second one on the same directory raises :class:`SpoolLocked` (``flock``).
    max_bytes : int
        Bound on the bytes waiting (headers included); :meth:`append` raises
        :class:`SpoolFull` rather than exceed it.
    segment_bytes : int
        A new segment is started once the newest one reaches this size.
    """

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = (self.directory / "lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolLocked(
                f"spool {self.directory} is in use by another process or store; "
                "give every writing process its own spool directory"
            ) from None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.RLock()
        self._cursor_path = self.directory / "cursor"
        self._cursor = self._read_cursor()
        self._records, self._bytes, self._head_seq = self._recover()

    # -- recovery ----------------------------------------------------------------------------

    def _segment(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.name[: -len(_SUFFIX)]) for p in self.directory.glob(f"*{_SUFFIX}"))

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq_text, offset_text = self._cursor_path.read_text().split()
            return int(seq_text), int(offset_text)
        except FileNotFoundError:
            return (0, 0)
        except ValueError as exc:
            raise SpoolCorrupt(f"spool cursor {self._cursor_path} is unreadable: {exc}") from exc

    def _write_cursor(self, seq: int, offset: int) -> None:
        temporary = self._cursor_path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            handle.write(f"{seq} {offset}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._cursor_path)
        _fsync_dir(self.directory)
        self._cursor = (seq, offset)

    def _recover(self) -> tuple[int, int, int]:
        """Drop consumed segments, cut a torn tail, count what waits; return (n, bytes, head)."""
        cursor_seq, cursor_offset = self._cursor
        segments = self._segments()
        for seq in segments:
            if seq < cursor_seq:
                self._segment(seq).unlink()
        segments = [seq for seq in segments if seq >= cursor_seq]
        records = 0
        waiting = 0
        for position, seq in enumerate(segments):
            path = self._segment(seq)
            start = cursor_offset if seq == cursor_seq else 0
            good_end = start
            with path.open("rb") as handle:
                handle.seek(start)
                while (record := self._read_at(handle, seq, good_end)) is not None:
                    records += 1
                    good_end = record.next_offset
            size = path.stat().st_size
            if good_end < size:
                if position != len(segments) - 1:
                    raise SpoolCorrupt(f"spool segment {path} is damaged at byte {good_end}")
                with path.open("r+b") as handle:
                    handle.truncate(good_end)
                    os.fsync(handle.fileno())
            waiting += max(0, good_end - start)
        head = segments[-1] if segments else cursor_seq
        if not segments:
            self._write_cursor(cursor_seq, 0)
        return records, waiting, head

    @staticmethod
    def _read_at(handle: BinaryIO, seq: int, offset: int) -> SpoolRecord | None:
        """The record at ``offset`` of an open segment, or None at its end or a torn record."""
        handle.seek(offset)
        header = handle.read(HEADER.size)
        if len(header) < HEADER.size:
            return None
        length, crc, appended_us = HEADER.unpack(header)
        if length > MAX_RECORD_BYTES:
            return None
        payload = handle.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return None
        return SpoolRecord(seq, offset, offset + HEADER.size + length, appended_us, payload)

    # -- queue operations --------------------------------------------------------------------

    def append(self, payload: bytes, appended_us: int | None = None) -> None:
        """Append one payload durably (written and fsync-ed when this returns).

        Raises
        ------
        SpoolFull
            The spool would hold more than ``max_bytes``.
        """
        if len(payload) > MAX_RECORD_BYTES:
            raise SpoolFull(f"a {len(payload)}-byte write is larger than a spool record may be")
        stamp_us = time.time_ns() // 1000 if appended_us is None else appended_us
        record = HEADER.pack(len(payload), zlib.crc32(payload), stamp_us) + payload
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.directory} holds {self._bytes} bytes; another {len(record)} "
                    f"would pass its {self.max_bytes}-byte bound"
                )
            path = self._segment(self._head_seq)
            is_new = not path.exists()
            if not is_new and path.stat().st_size >= self.segment_bytes:
                self._head_seq += 1
                path = self._segment(self._head_seq)
                is_new = True
            with path.open("ab") as handle:
                handle.write(record)
                handle.flush()
                os.fsync(handle.fileno())
            if is_new:
                _fsync_dir(self.directory)
            self._records += 1
            self._bytes += len(record)

    def peek(self, max_records: int, max_bytes: int | None = None) -> list[SpoolRecord]:
        """Up to ``max_records`` oldest records (at least one if any wait), oldest first.

        ``max_bytes`` stops the batch once the payloads reach that size.
        """
        with self._lock:
            batch: list[SpoolRecord] = []
            total = 0
            seq, offset = self._cursor
            for current in range(seq, self._head_seq + 1):
                path = self._segment(current)
                if not path.exists():
                    continue
                with path.open("rb") as handle:
                    position = offset if current == seq else 0
                    while len(batch) < max_records:
                        record = self._read_at(handle, current, position)
                        if record is None:
                            break
                        batch.append(record)
                        total += len(record.payload)
                        position = record.next_offset
                        if max_bytes is not None and total >= max_bytes:
                            return batch
                if len(batch) >= max_records:
                    break
            return batch

    def consume(self, records: list[SpoolRecord]) -> None:
        """Mark the given oldest records (as returned by :meth:`peek`) delivered."""
        if not records:
            return
        with self._lock:
            first = (records[0].seq, records[0].offset)
            if first != self._cursor and not (first[1] == 0 and first[0] > self._cursor[0]):
                raise StoreError("spool records must be consumed oldest first")
            last = records[-1]
            for record in records:
                self._bytes -= HEADER.size + len(record.payload)
            self._records -= len(records)
            if self._records == 0:
                # Everything delivered: start a fresh segment, then drop the old ones.
                self._head_seq = last.seq + 1
                self._write_cursor(self._head_seq, 0)
                for seq in self._segments():
                    if seq < self._head_seq:
                        self._segment(seq).unlink()
                self._bytes = 0
                return
            seq, offset = last.seq, last.next_offset
            path = self._segment(seq)
            if seq < self._head_seq and offset >= path.stat().st_size:
                seq, offset = seq + 1, 0
            self._write_cursor(seq, offset)
            for old in self._segments():
                if old < seq:
                    self._segment(old).unlink()

    def status(self) -> SpoolStatus:
        """Records and bytes waiting, and the append time of the oldest."""
        with self._lock:
            oldest = self.peek(1)
            return SpoolStatus(
                records=self._records,
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                oldest_appended_us=oldest[0].appended_us if oldest else None,
            )

    def __len__(self) -> int:
        return self._records

    def close(self) -> None:
        """Release the directory lock (the spooled records stay on disk)."""
        with self._lock:
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
