"""Per-key token buckets (in-process; one API process holds its own buckets)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``.

    Parameters
    ----------
    per_minute : int
        Sustained rate and bucket size.
    clock : callable
        Monotonic seconds (tests pass their own).
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.capacity = float(per_minute)
        self._rate_per_s = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; 0.0 when allowed, else seconds until a token is available."""
        now_s = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now_s)
            bucket.tokens = min(
                self.capacity, bucket.tokens + (now_s - bucket.updated_s) * self._rate_per_s
            )
            bucket.updated_s = now_s
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self._rate_per_s
