"""Weekly series and their trend (pure functions over the store's week summaries).

The red flags themselves are :mod:`alerts.redflags` rules, so the API and the alerts agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from storage.base import WeekSummary

Direction = Literal["rising", "stable", "falling", "unknown"]
MIN_TREND_WEEKS = 3


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of weekly episode counts (episodes per week, per week)."""

    slope_episodes_per_week: float
    direction: Direction
    weeks: int


def fill_weeks(summaries: Sequence[WeekSummary], weeks: Sequence[str]) -> list[WeekSummary]:
    """One summary per week of ``weeks`` (in that order), empty weeks filled with zeros."""
    by_week = {s.week: s for s in summaries}
    return [by_week.get(w) or WeekSummary(w, 0, 0, None, None, tuple([0] * 24)) for w in weeks]


def weekly_trend(episode_counts: Sequence[int], rising_slope: float = 0.5) -> Trend:
    """Trend of weekly episode counts.

    Parameters
    ----------
    episode_counts : sequence of int
        Episodes per week, oldest first, empty weeks included as 0.
    rising_slope : float
        Slope (episodes/week per week) at or above which the trend is ``rising`` (at or below
        its negative: ``falling``).
    """
    n = len(episode_counts)
    if n < MIN_TREND_WEEKS:
        return Trend(0.0, "unknown", n)
    slope = float(np.polyfit(np.arange(n, dtype=float), np.asarray(episode_counts, float), 1)[0])
    direction: Direction = "stable"
    if slope >= rising_slope:
        direction = "rising"
    elif slope <= -rising_slope:
        direction = "falling"
    return Trend(slope, direction, n)
