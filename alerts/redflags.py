"""Night-level red-flag rules for clinicians: pure functions of a device's night summaries.

The rules and their defaults are those of the project's seed article (issue 8):

- ``frequent_nights``: cramps on more than ``nights_per_week`` (2) of the last 7 nights;
- ``long_episode``: an episode longer than ``long_episode_min`` (5) minutes in the last 7 nights;
- ``worsening_trend``: over the last 4 weeks, episodes per night or mean episode duration rise,
  by a one-sided Mann-Kendall test (Kendall's tau against night index; Mann 1945, Econometrica
  13:245-259) at ``trend_alpha`` with the later half of the window above the earlier half;
- ``sensor_off``: the evaluated night has data but EMG for less than ``min_coverage`` of it.

Each rule looks at a window that ends at the evaluated night; :mod:`alerts.redflag_store` keeps
a flag active while its rule keeps firing, so it is sent once, not every night.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats

from storage.base import NightSummary


class RedFlagRule(StrEnum):
    """The red-flag rules."""

    FREQUENT_NIGHTS = "frequent_nights"
    LONG_EPISODE = "long_episode"
    WORSENING_TREND = "worsening_trend"
    SENSOR_OFF = "sensor_off"


@dataclass(frozen=True)
class RedFlagRules:
    """Thresholds of the rules.

    Attributes
    ----------
    nights_per_week : int
        Flag when cramps occur on more than this many of the last 7 nights.
    long_episode_min : float
        Flag an episode longer than this, minutes (exactly this long does not flag).
    trend_days : int
        Length of the trend window, nights.
    trend_alpha : float
        One-sided significance level of the Mann-Kendall test.
    trend_min_nights : int
        Nights with data needed in the window before the frequency trend is tested.
    trend_min_cramp_nights : int
        Nights with cramps needed before the duration trend is tested.
    min_coverage : float
        ``sensor_off`` when a night's EMG coverage (0..1) is below this.
    """

    nights_per_week: int = 2
    long_episode_min: float = 5.0
    trend_days: int = 28
    trend_alpha: float = 0.05
    trend_min_nights: int = 14
    trend_min_cramp_nights: int = 6
    min_coverage: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.nights_per_week < 7:
            raise ValueError(f"nights_per_week must be 0..6, got {self.nights_per_week}")
        if self.long_episode_min <= 0:
            raise ValueError(f"long_episode_min must be > 0, got {self.long_episode_min}")
        if self.trend_days < 4 or not 0 < self.trend_alpha < 1:
            raise ValueError("trend_days must be >= 4 and 0 < trend_alpha < 1")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")


@dataclass(frozen=True)
class RedFlagFinding:
    """A rule that fires at the evaluated night.

    Attributes
    ----------
    rule : RedFlagRule
    nights : tuple of str
        ISO dates of the nights that triggered it, ascending.
    summary : str
        One sentence for the clinician.
    detail : dict
        The rule's figures (JSON values).
    """

    rule: RedFlagRule
    nights: tuple[str, ...]
    summary: str
    detail: dict[str, Any]


def evaluate_red_flags(
    nights: Sequence[NightSummary],
    as_of_night: str,
    rules: RedFlagRules | None = None,
) -> list[RedFlagFinding]:
    """Every rule that fires for one device at night ``as_of_night``.

    Parameters
    ----------
    nights : sequence of NightSummary
        The device's nights (any order; nights outside the windows are ignored; missing nights
        mean no data).
    as_of_night : str
        ISO date of the night evaluated (the evening it starts).
    rules : RedFlagRules, optional
        Thresholds; defaults when None.
    """
    rules = rules or RedFlagRules()
    as_of = _parse_night(as_of_night)
    devices = {n.device_id for n in nights}
    if len(devices) > 1:
        raise ValueError(f"night summaries of one device expected, got {sorted(devices)}")
    by_night: dict[date, NightSummary] = {}
    for summary in nights:
        by_night[_parse_night(summary.night)] = summary
    findings = [
        _frequent_nights(by_night, as_of, rules),
        _long_episode(by_night, as_of, rules),
        _worsening_trend(by_night, as_of, rules),
        _sensor_off(by_night, as_of, rules),
    ]
    return [f for f in findings if f is not None]


def _window(by_night: dict[date, NightSummary], as_of: date, days: int) -> list[NightSummary]:
    first = as_of - timedelta(days=days - 1)
    return [by_night[d] for d in sorted(by_night) if first <= d <= as_of]


def _frequent_nights(
    by_night: dict[date, NightSummary], as_of: date, rules: RedFlagRules
) -> RedFlagFinding | None:
    cramp_nights = [n.night for n in _window(by_night, as_of, 7) if n.episodes > 0]
    if len(cramp_nights) <= rules.nights_per_week:
        return None
    return RedFlagFinding(
        RedFlagRule.FREQUENT_NIGHTS,
        tuple(cramp_nights),
        f"Cramps on {len(cramp_nights)} of the last 7 nights (more than {rules.nights_per_week}).",
        {"cramp_nights": len(cramp_nights), "threshold": rules.nights_per_week},
    )


def _long_episode(
    by_night: dict[date, NightSummary], as_of: date, rules: RedFlagRules
) -> RedFlagFinding | None:
    limit_s = rules.long_episode_min * 60.0
    long_nights = [n for n in _window(by_night, as_of, 7) if n.longest_cramp_s > limit_s]
    if not long_nights:
        return None
    longest_s = max(n.longest_cramp_s for n in long_nights)
    return RedFlagFinding(
        RedFlagRule.LONG_EPISODE,
        tuple(n.night for n in long_nights),
        f"A cramp lasted {longest_s / 60:.1f} min (longer than {rules.long_episode_min:g} min).",
        {"longest_s": longest_s, "threshold_s": limit_s},
    )


def _worsening_trend(
    by_night: dict[date, NightSummary], as_of: date, rules: RedFlagRules
) -> RedFlagFinding | None:
    window = [n for n in _window(by_night, as_of, rules.trend_days) if n.first_data_us is not None]
    first = as_of - timedelta(days=rules.trend_days - 1)
    detail: dict[str, Any] = {"window_nights": len(window), "alpha": rules.trend_alpha}
    reasons: list[str] = []
    if len(window) >= rules.trend_min_nights:
        day = np.array([(_parse_night(n.night) - first).days for n in window], dtype=float)
        count = np.array([n.episodes for n in window], dtype=float)
        rising = _rising(day, count, rules)
        detail["frequency"] = rising
        if rising["rising"]:
            reasons.append("more frequent")
    cramp = [n for n in window if n.episodes > 0]
    if len(cramp) >= rules.trend_min_cramp_nights:
        day = np.array([(_parse_night(n.night) - first).days for n in cramp], dtype=float)
        mean_s = np.array([n.total_cramp_s / n.episodes for n in cramp], dtype=float)
        rising = _rising(day, mean_s, rules)
        detail["duration"] = rising
        if rising["rising"]:
            reasons.append("longer")
    if not reasons:
        return None
    return RedFlagFinding(
        RedFlagRule.WORSENING_TREND,
        tuple(n.night for n in cramp),
        f"Cramps became {' and '.join(reasons)} over the last {rules.trend_days // 7} weeks.",
        detail,
    )


def _rising(day: np.ndarray, value: np.ndarray, rules: RedFlagRules) -> dict[str, Any]:
    """One-sided Mann-Kendall test plus a half-window comparison; JSON-ready figures."""
    if np.ptp(value) == 0:
        return {"rising": False, "tau": 0.0, "p": 1.0, "slope_per_week": 0.0}
    tau, p_value = stats.kendalltau(day, value, alternative="greater")
    slope = stats.theilslopes(value, day).slope * 7.0
    middle = rules.trend_days / 2.0
    early, late = value[day < middle], value[day >= middle]
    later_higher = early.size > 0 and late.size > 0 and float(late.mean()) > float(early.mean())
    rising = bool(p_value < rules.trend_alpha and later_higher)
    return {
        "rising": rising,
        "tau": round(float(tau), 4),
        "p": round(float(p_value), 5),
        "slope_per_week": round(float(slope), 4),
    }


def _sensor_off(
    by_night: dict[date, NightSummary], as_of: date, rules: RedFlagRules
) -> RedFlagFinding | None:
    night = by_night.get(as_of)
    if night is None or night.first_data_us is None or night.data_coverage >= rules.min_coverage:
        return None
    return RedFlagFinding(
        RedFlagRule.SENSOR_OFF,
        (night.night,),
        f"The sensor recorded only {night.data_coverage:.0%} of the night.",
        {"coverage": round(night.data_coverage, 4), "threshold": rules.min_coverage},
    )


def _parse_night(night: str) -> date:
    try:
        return date.fromisoformat(night)
    except ValueError:
        raise ValueError(f"night {night!r} is not an ISO date (YYYY-MM-DD)") from None
