"""Ingest health per (device, stream): arrival-side figures joined with sequencing counters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ingest.sequencing import StreamCounters
from storage.base import HealthRecord

RATE_WINDOW_US = 10_000_000  # frames/s is measured over the last 10 s of arrivals


@dataclass
class _Arrivals:
    last_arrival_us: int = 0
    last_device_us: int = 0
    dead_letters: int = 0
    recent_us: deque[int] = field(default_factory=deque)


class HealthTracker:
    """Arrival times, device-clock lag and dead letters of every (device, stream) seen."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Arrivals] = {}

    def frame(self, device_id: str, stream: str, device_end_us: int, arrival_us: int) -> None:
        """Note an accepted frame whose data ends at ``device_end_us`` (device clock)."""
        entry = self._streams.setdefault((device_id, stream), _Arrivals())
        entry.last_arrival_us = max(entry.last_arrival_us, arrival_us)
        entry.last_device_us = max(entry.last_device_us, device_end_us)
        entry.recent_us.append(arrival_us)
        while entry.recent_us and entry.recent_us[0] < arrival_us - RATE_WINDOW_US:
            entry.recent_us.popleft()

    def dead_letter(self, device_id: str, stream: str, arrival_us: int) -> None:
        """Note a rejected message on a stream's topic."""
        entry = self._streams.setdefault((device_id, stream), _Arrivals())
        entry.last_arrival_us = max(entry.last_arrival_us, arrival_us)
        entry.dead_letters += 1

    def records(
        self, counters: dict[tuple[str, str], StreamCounters], now_us: int
    ) -> list[HealthRecord]:
        """One :class:`HealthRecord` per (device, stream) seen, at ``now_us``.

        Parameters
        ----------
        counters : dict
            Sequencing counters keyed by (device_id, stream label).
        now_us : int
            Worker wall clock, µs since the epoch.
        """
        out = []
        for key in sorted(set(self._streams) | set(counters)):
            entry = self._streams.get(key, _Arrivals())
            count = counters.get(key, StreamCounters())
            recent = [t for t in entry.recent_us if t > now_us - RATE_WINDOW_US]
            lag_s = (
                (entry.last_arrival_us - entry.last_device_us) / 1e6
                if entry.last_device_us
                else 0.0
            )
            out.append(
                HealthRecord(
                    device_id=key[0],
                    stream=key[1],
                    arrival_us=now_us,
                    last_device_us=entry.last_device_us,
                    frames=count.frames,
                    samples=count.samples,
                    gaps=count.gaps,
                    gap_samples=count.gap_samples,
                    duplicates=count.duplicates + count.late,
                    reordered=count.reordered,
                    dead_letters=entry.dead_letters,
                    frames_per_s=len(recent) / (RATE_WINDOW_US / 1e6),
                    lag_s=lag_s,
                )
            )
        return out
