"""Night and week summaries, computed once for both adapters from episodes, data and quality.

A *night* runs from local noon to the next local noon and is named by the ISO date of its
evening. The local time is UTC plus a fixed ``utc_offset_s`` given with the query (a DST change
inside the range is not modelled). A *week* is the ISO week (Monday start) of a night's name.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from detection.events import Episode, QualityEvent
from storage.base import NightSummary, WeekSummary

SECOND_US: Final = 1_000_000
DAY_US: Final = 86_400 * SECOND_US
NOON_US: Final = 12 * 3600 * SECOND_US
_EPOCH: Final = date(1970, 1, 1)


def night_index(ts_us: int, utc_offset_s: int) -> int:
    """Days since 1970-01-01 of the evening of the night that contains ``ts_us``."""
    return (ts_us + utc_offset_s * SECOND_US - NOON_US) // DAY_US


def night_start_us(index: int, utc_offset_s: int) -> int:
    """UTC µs of the local noon that starts night ``index``."""
    return index * DAY_US + NOON_US - utc_offset_s * SECOND_US


def night_name(index: int) -> str:
    """ISO date of the evening of night ``index``."""
    return (_EPOCH + timedelta(days=index)).isoformat()


def nights_starting_in(start_us: int, end_us: int, utc_offset_s: int) -> range:
    """Indices of the nights whose local noon start lies in ``[start_us, end_us)``."""
    first = night_index(start_us - 1, utc_offset_s) + 1
    last = night_index(end_us - 1, utc_offset_s)
    return range(first, last + 1)


def iso_week(index: int) -> str:
    """``YYYY-Www`` of the evening of night ``index``."""
    year, week, _ = (_EPOCH + timedelta(days=index)).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class NightData:
    """What one device's 1 Hz series holds for one night (an adapter computes it in its DB).

    Attributes
    ----------
    device_id : str
    index : int
        Night index (:func:`night_index`).
    first_us, last_us : int
        Times of the first and last stored series point of the night (EMG or ACC).
    emg_points : int
        Points of the night that carry an EMG envelope (one per second of EMG).
    """

    device_id: str
    index: int
    first_us: int
    last_us: int
    emg_points: int


def data_coverage(data: NightData) -> float:
    """Fraction of the sleep window with EMG, 0..1.

    The sleep window runs from the night's first to its last series point (inclusive, 1 s
    each); coverage is the share of its seconds that have an EMG envelope.
    """
    window_s = (data.last_us - data.first_us) // SECOND_US + 1
    return min(1.0, data.emg_points / window_s)


def summarize_nights(
    device_ids: Sequence[str],
    start_us: int,
    end_us: int,
    utc_offset_s: int,
    episodes: Iterable[Episode],
    data: Iterable[NightData],
    quality: Iterable[QualityEvent],
) -> list[NightSummary]:
    """Summaries of the nights starting in ``[start_us, end_us)`` that have data or episodes.

    Parameters
    ----------
    episodes : iterable of Episode
        At least the devices' episodes with onset in those nights; an episode belongs to the
        night its onset falls in.
    data : iterable of NightData
        Per-night series facts for those nights.
    quality : iterable of QualityEvent
        At least the intervals overlapping those nights; a night lists the flags of the
        intervals that overlap it, sorted.

    Returns
    -------
    list of NightSummary
        Ordered by device (as given), then night.
    """
    wanted = nights_starting_in(start_us, end_us, utc_offset_s)
    order = {device_id: position for position, device_id in enumerate(device_ids)}
    by_night: dict[tuple[str, int], list[Episode]] = defaultdict(list)
    for episode in episodes:
        index = night_index(episode.onset_us, utc_offset_s)
        if episode.device_id in order and index in wanted:
            by_night[(episode.device_id, index)].append(episode)
    facts = {(d.device_id, d.index): d for d in data if d.device_id in order and d.index in wanted}
    flags: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in quality:
        if event.device_id not in order:
            continue
        last_us = event.end_us - 1 if event.end_us is not None else event.start_us
        for index in range(
            night_index(event.start_us, utc_offset_s),
            night_index(max(last_us, event.start_us), utc_offset_s) + 1,
        ):
            if index in wanted:
                flags[(event.device_id, index)].add(event.flag.value)
    keys = sorted(set(by_night) | set(facts), key=lambda key: (order[key[0]], key[1]))
    summaries = []
    for device_id, index in keys:
        night_episodes = sorted(by_night.get((device_id, index), []), key=_episode_order)
        fact = facts.get((device_id, index))
        durations = [e.duration_s for e in night_episodes]
        peaks = [e.peak_intensity for e in night_episodes]
        summaries.append(
            NightSummary(
                device_id=device_id,
                night=night_name(index),
                first_data_us=fact.first_us if fact else None,
                last_data_us=fact.last_us if fact else None,
                episodes=len(night_episodes),
                total_cramp_s=float(sum(durations)),
                longest_cramp_s=max(durations, default=0.0),
                mean_peak_intensity=statistics.fmean(peaks) if peaks else None,
                got_up=any(e.got_up_after is True for e in night_episodes),
                data_coverage=data_coverage(fact) if fact else 0.0,
                quality_flags=tuple(sorted(flags.get((device_id, index), ()))),
            )
        )
    return summaries


def summarize_weeks(
    start_us: int, end_us: int, utc_offset_s: int, episodes: Iterable[Episode]
) -> list[WeekSummary]:
    """One summary per ISO week of the nights starting in the range, empty weeks included.

    An episode counts when its night (see :func:`summarize_nights`) starts in
    ``[start_us, end_us)`` and goes to that night's week. ``hour_histogram`` counts onsets per
    local clock hour.
    """
    wanted = nights_starting_in(start_us, end_us, utc_offset_s)
    weeks: dict[str, list[tuple[int, Episode]]] = {iso_week(index): [] for index in wanted}
    for episode in sorted(episodes, key=_episode_order):
        index = night_index(episode.onset_us, utc_offset_s)
        if index in wanted:
            weeks[iso_week(index)].append((index, episode))
    summaries = []
    for week, members in weeks.items():
        durations = [e.duration_s for _, e in members]
        hours = [0] * 24
        for _, episode in members:
            local_s = episode.onset_us // SECOND_US + utc_offset_s
            hours[(local_s // 3600) % 24] += 1
        summaries.append(
            WeekSummary(
                week=week,
                cramp_nights=len({index for index, _ in members}),
                episodes=len(members),
                median_duration_s=float(statistics.median(durations)) if durations else None,
                longest_duration_s=max(durations) if durations else None,
                hour_histogram=tuple(hours),
            )
        )
    return summaries


def _episode_order(episode: Episode) -> tuple[int, str]:
    return (episode.onset_us, episode.episode_id)
