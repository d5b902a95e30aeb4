"""Red-flag rules on crafted night histories, at their boundaries."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from alerts.redflags import RedFlagRule, RedFlagRules, evaluate_red_flags
from storage.base import NightSummary

AS_OF = date(2026, 11, 24)


def night(
    days_before: int,
    episodes: int = 0,
    *,
    longest_s: float | None = None,
    total_s: float | None = None,
    coverage: float = 0.95,
    device_id: str = "dev-1",
) -> NightSummary:
    """A night ``days_before`` the evaluated one, with data, and ``episodes`` cramps."""
    longest = longest_s if longest_s is not None else (40.0 if episodes else 0.0)
    return NightSummary(
        device_id=device_id,
        night=(AS_OF - timedelta(days=days_before)).isoformat(),
        first_data_us=1,
        last_data_us=2,
        episodes=episodes,
        total_cramp_s=total_s if total_s is not None else longest * episodes,
        longest_cramp_s=longest,
        mean_peak_intensity=6.0 if episodes else None,
        got_up=False,
        data_coverage=coverage,
        quality_flags=(),
    )


def rules_fired(nights: list[NightSummary], **rules: float) -> set[RedFlagRule]:
    found = evaluate_red_flags(nights, AS_OF.isoformat(), RedFlagRules(**rules))  # type: ignore[arg-type]
    return {f.rule for f in found}


def quiet_week() -> list[NightSummary]:
    return [night(d) for d in range(7)]


def test_cramps_on_two_of_seven_nights_is_no_flag_and_on_three_is() -> None:
    two = [night(d, 1 if d in (0, 3) else 0) for d in range(7)]
    three = [night(d, 1 if d in (0, 3, 6) else 0) for d in range(7)]
    assert RedFlagRule.FREQUENT_NIGHTS not in rules_fired(two)
    assert RedFlagRule.FREQUENT_NIGHTS in rules_fired(three)
    [finding] = [
        f for f in evaluate_red_flags(three, AS_OF.isoformat()) if f.rule == "frequent_nights"
    ]
    assert finding.nights == tuple((AS_OF - timedelta(days=d)).isoformat() for d in (6, 3, 0))


def test_a_cramp_night_eight_days_back_is_outside_the_week() -> None:
    nights = [night(d, 1 if d in (0, 3, 7) else 0) for d in range(8)]
    assert RedFlagRule.FREQUENT_NIGHTS not in rules_fired(nights)


def test_the_nights_threshold_is_configurable() -> None:
    three = [night(d, 1 if d in (0, 1, 2) else 0) for d in range(7)]
    assert RedFlagRule.FREQUENT_NIGHTS not in rules_fired(three, nights_per_week=3)


def test_an_episode_of_exactly_five_minutes_is_no_flag_and_longer_is() -> None:
    exactly = [*quiet_week()[1:], night(0, 1, longest_s=300.0)]
    longer = [*quiet_week()[1:], night(0, 1, longest_s=300.5)]
    assert RedFlagRule.LONG_EPISODE not in rules_fired(exactly)
    assert RedFlagRule.LONG_EPISODE in rules_fired(longer)
    assert RedFlagRule.LONG_EPISODE in rules_fired(exactly, long_episode_min=4.99)


def test_more_frequent_cramps_over_four_weeks_are_a_worsening_trend() -> None:
    rng = np.random.default_rng(5)
    counts = [int(rng.poisson(0.1 + 0.1 * (27 - d))) for d in range(28)]  # rises to ~2.8
    nights = [night(d, counts[d]) for d in range(28)]
    found = evaluate_red_flags(nights, AS_OF.isoformat())
    [trend] = [f for f in found if f.rule is RedFlagRule.WORSENING_TREND]
    assert "more frequent" in trend.summary
    assert trend.detail["frequency"]["p"] < 0.05
    assert trend.detail["frequency"]["slope_per_week"] > 0


def test_longer_cramps_at_a_steady_rate_are_a_worsening_trend() -> None:
    nights = [night(d, 1, longest_s=30.0 + 4.0 * (27 - d)) for d in range(0, 28, 2)]
    nights += [night(d) for d in range(1, 28, 2)]
    found = evaluate_red_flags(nights, AS_OF.isoformat())
    [trend] = [f for f in found if f.rule is RedFlagRule.WORSENING_TREND]
    assert trend.summary.startswith("Cramps became longer")


@pytest.mark.parametrize("direction", ["flat", "falling"])
def test_steady_or_improving_cramps_are_no_trend(direction: str) -> None:
    rng = np.random.default_rng(11)
    rate = (lambda d: 1.0) if direction == "flat" else (lambda d: 0.1 * d)
    nights = [night(d, int(rng.poisson(rate(d)))) for d in range(28)]
    assert RedFlagRule.WORSENING_TREND not in rules_fired(nights)


def test_too_few_nights_with_data_give_no_trend() -> None:
    nights = [night(d, 27 - d) for d in range(0, 28, 3)]  # 10 nights < 14 needed
    assert RedFlagRule.WORSENING_TREND not in rules_fired(nights)
    assert RedFlagRule.WORSENING_TREND in rules_fired(nights, trend_min_nights=10)


def test_a_night_mostly_without_sensor_data_is_flagged_at_the_boundary() -> None:
    assert RedFlagRule.SENSOR_OFF in rules_fired([night(0, coverage=0.49)])
    assert RedFlagRule.SENSOR_OFF not in rules_fired([night(0, coverage=0.5)])
    assert RedFlagRule.SENSOR_OFF not in rules_fired([night(1, coverage=0.1)])  # not tonight


def test_nights_of_two_devices_or_a_bad_date_are_refused() -> None:
    with pytest.raises(ValueError, match="one device"):
        evaluate_red_flags([night(0), night(1, device_id="dev-2")], AS_OF.isoformat())
    with pytest.raises(ValueError, match="ISO date"):
        evaluate_red_flags([night(0)], "24/11/2026")
