"""Query rules both adapters share: look-back windows, episode filtering/ordering, series bins.

Each adapter fetches candidates with its own query language and then passes them through these
functions, so the two return the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from detection.events import Episode, QualityEvent
from storage.base import EpisodeQuery

SECOND_US: Final = 1_000_000
EPISODE_LOOKBACK_US: Final = 6 * 3600 * SECOND_US
"""An episode is found by a range it overlaps only if its onset is at most this long before the
range start (time is the onset in both adapters; a cramp does not last six hours)."""
QUALITY_LOOKBACK_US: Final = 36 * 3600 * SECOND_US
"""The same for quality-fault intervals (a lead can stay off all night)."""


def episode_onset_floor_us(query: EpisodeQuery) -> int:
    """Earliest onset an episode of ``query`` can have (look-back, or the cursor when later)."""
    floor_us = query.start_us - EPISODE_LOOKBACK_US
    if query.after_episode is not None:
        floor_us = max(floor_us, query.after_episode[0])
    return max(0, floor_us)


def select_episodes(
    candidates: Iterable[Episode], query: EpisodeQuery, *, ordered: bool = False
) -> list[Episode]:
    """Filter, order (onset, episode id), page and limit episodes for ``query``.

    Parameters
    ----------
    candidates : iterable of Episode
        At least every episode of the query's devices with onset in
        ``[start_us - EPISODE_LOOKBACK_US, end_us)``; extra ones are dropped here.
    query : EpisodeQuery
        An already validated query.
    ordered : bool
        The candidates come in (onset, episode id) order: stop reading them once the page is
        full (a lazy iterable then builds no more episodes than the page needs).
    """
    devices = set(query.device_ids)
    earliest_us = query.start_us - EPISODE_LOOKBACK_US
    kept = []
    for episode in candidates:
        if episode.device_id not in devices:
            continue
        if not earliest_us <= episode.onset_us < query.end_us:
            continue
        ended_before = episode.offset_us is not None and episode.offset_us <= query.start_us
        if episode.onset_us < query.start_us and ended_before:
            continue
        if episode.is_open and not query.include_open:
            continue
        if episode.duration_s < query.min_duration_s:
            continue
        if episode.peak_intensity < query.min_peak_intensity:
            continue
        if query.site is not None and episode.site != query.site:
            continue
        if query.after_episode is not None and (
            (episode.onset_us, episode.episode_id) <= query.after_episode
        ):
            continue
        kept.append(episode)
        if ordered and len(kept) == query.limit:
            break
    kept.sort(key=lambda e: (e.onset_us, e.episode_id))
    return kept if query.limit is None else kept[: query.limit]


def select_quality(
    candidates: Iterable[QualityEvent], device_id: str, start_us: int, end_us: int
) -> list[QualityEvent]:
    """Quality intervals of ``device_id`` overlapping ``[start_us, end_us)``, ordered.

    ``candidates`` holds at least the intervals starting in
    ``[start_us - QUALITY_LOOKBACK_US, end_us)``. Order: start, then flag.
    """
    earliest_us = start_us - QUALITY_LOOKBACK_US
    kept = [
        event
        for event in candidates
        if event.device_id == device_id
        and earliest_us <= event.start_us < end_us
        and (event.start_us >= start_us or event.end_us is None or event.end_us > start_us)
    ]
    kept.sort(key=lambda e: (e.start_us, e.flag.value))
    return kept


def series_bin_us(start_us: int, end_us: int, max_points: int) -> int:
    """Width of the downsampling bins, µs: whole seconds, at least 1 s, <= max_points bins.

    Bins start at ``start_us + k * width``. A width of one second means "no downsampling":
    the stored 1 Hz points are returned as they are.
    """
    span_s = -(-(end_us - start_us) // SECOND_US)
    return max(1, -(-span_s // max_points)) * SECOND_US
