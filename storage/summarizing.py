"""Night and week summaries computed the same way for every adapter.

An adapter supplies three raw reads (episodes by onset, per-night series coverage, quality
intervals); this base class validates the query and hands them to :mod:`storage.summaries`, so
SQLite and InfluxDB give identical answers.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from detection.events import Episode, QualityEvent
from storage import validation
from storage.base import NightSummary, Store, WeekSummary
from storage.summaries import (
    NightData,
    night_start_us,
    nights_starting_in,
    summarize_nights,
    summarize_weeks,
)
from storage.validation import DeviceRegistry


class SummarizingStore(Store):
    """A :class:`Store` whose summaries come from its raw reads."""

    _registry: DeviceRegistry | None

    @abstractmethod
    def _episode_candidates(
        self, device_ids: Sequence[str], from_us: int, end_us: int
    ) -> list[Episode]:
        """Episodes of the devices with onset in ``[from_us, end_us)``."""

    @abstractmethod
    def _night_data(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int
    ) -> list[NightData]:
        """Series coverage per (device, night) for series points in ``[start_us, end_us)``."""

    @abstractmethod
    def _quality_candidates(
        self, device_ids: Sequence[str], start_us: int, end_us: int
    ) -> list[QualityEvent]:
        """Quality intervals that may overlap ``[start_us, end_us)``."""

    def night_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[NightSummary]:
        validation.check_range(start_us, end_us)
        validation.check_utc_offset(utc_offset_s)
        devices = validation.check_devices(device_ids, self._registry)
        nights = nights_starting_in(start_us, end_us, utc_offset_s)
        if not nights:
            return []
        first_us = night_start_us(nights[0], utc_offset_s)
        last_us = night_start_us(nights[-1] + 1, utc_offset_s)
        return summarize_nights(
            devices,
            start_us,
            end_us,
            utc_offset_s,
            self._episode_candidates(devices, first_us, last_us),
            self._night_data(devices, first_us, last_us, utc_offset_s),
            self._quality_candidates(devices, first_us, last_us),
        )

    def week_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[WeekSummary]:
        validation.check_range(start_us, end_us)
        validation.check_utc_offset(utc_offset_s)
        devices = validation.check_devices(device_ids, self._registry)
        nights = nights_starting_in(start_us, end_us, utc_offset_s)
        if not nights:
            return []
        episodes = self._episode_candidates(
            devices,
            night_start_us(nights[0], utc_offset_s),
            night_start_us(nights[-1] + 1, utc_offset_s),
        )
        return summarize_weeks(start_us, end_us, utc_offset_s, episodes)
