"""Scenario presets: how many of each event and fault a night holds.

Rates are drawn per night from the ranges, so two nights of one scenario differ. Sources of the
numbers are in ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Range = tuple[float, float]


@dataclass(frozen=True)
class Scenario:
    """Event and fault rates of one kind of night.

    Attributes
    ----------
    name : str
    cramps : (int, int)
        Inclusive range of first cramps in the night (recurrences come on top).
    recurrence_p : float
        Probability that a cramp comes back 1-10 minutes after it ended.
    turns_per_h, movements_per_h, twitches_per_h : (float, float)
        Rates of turning over, other voluntary limb movements and twitches, per hour.
    plm_series : (int, int)
        Inclusive range of periodic-limb-movement series.
    walk_after_cramp_p, stretch_after_cramp_p : float
        Probability of getting up and walking / stretching in bed after a cramp.
    night_walks : (int, int)
        Getting up for other reasons (bathroom), inclusive range.
    mains_p : float
        Probability of mains hum somewhere in the night.
    wander_per_h, motion_artifacts_per_h : (float, float)
        Baseline-wander episodes and stand-alone motion artifacts per hour.
    lead_offs : (int, int)
        Inclusive range of electrode lead-off episodes.
    clip_level_uv : (float, float)
        Amplifier range ± µV; samples beyond it clip.
    drift_ppm : (float, float)
        Magnitude range of device clock drift, parts per million (0 = exact clock).
    frame_faults : bool
        Whether gaps, duplicated and out-of-order frames and clock jumps are planned.
    """

    name: str
    description: str
    cramps: tuple[int, int]
    recurrence_p: float
    turns_per_h: Range
    movements_per_h: Range
    twitches_per_h: Range
    plm_series: tuple[int, int]
    walk_after_cramp_p: float
    stretch_after_cramp_p: float
    night_walks: tuple[int, int]
    mains_p: float
    wander_per_h: Range
    motion_artifacts_per_h: Range
    lead_offs: tuple[int, int]
    clip_level_uv: Range
    drift_ppm: Range
    frame_faults: bool


SCENARIOS: Final[dict[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario(
            name="quiet",
            description="No cramps; a calm sleeper with few movements and a clean signal.",
            cramps=(0, 0),
            recurrence_p=0.0,
            turns_per_h=(0.8, 2.0),
            movements_per_h=(1.0, 3.0),
            twitches_per_h=(5.0, 20.0),
            plm_series=(0, 0),
            walk_after_cramp_p=0.0,
            stretch_after_cramp_p=0.0,
            night_walks=(0, 1),
            mains_p=0.2,
            wander_per_h=(0.0, 0.3),
            motion_artifacts_per_h=(0.0, 0.5),
            lead_offs=(0, 0),
            clip_level_uv=(6000.0, 10000.0),
            drift_ppm=(0.0, 20.0),
            frame_faults=False,
        ),
        Scenario(
            name="typical",
            description="One or two cramps among ordinary movements; mild faults.",
            cramps=(1, 2),
            recurrence_p=0.25,
            turns_per_h=(1.0, 3.0),
            movements_per_h=(2.0, 5.0),
            twitches_per_h=(10.0, 40.0),
            plm_series=(0, 1),
            walk_after_cramp_p=0.4,
            stretch_after_cramp_p=0.4,
            night_walks=(0, 1),
            mains_p=0.4,
            wander_per_h=(0.0, 0.5),
            motion_artifacts_per_h=(0.2, 1.0),
            lead_offs=(0, 0),
            clip_level_uv=(5000.0, 10000.0),
            drift_ppm=(5.0, 50.0),
            frame_faults=False,
        ),
        Scenario(
            name="frequent-cramps",
            description="Three to seven cramps, often recurring minutes apart.",
            cramps=(3, 7),
            recurrence_p=0.5,
            turns_per_h=(1.5, 4.0),
            movements_per_h=(2.0, 6.0),
            twitches_per_h=(10.0, 40.0),
            plm_series=(0, 1),
            walk_after_cramp_p=0.5,
            stretch_after_cramp_p=0.5,
            night_walks=(0, 1),
            mains_p=0.4,
            wander_per_h=(0.0, 0.5),
            motion_artifacts_per_h=(0.2, 1.0),
            lead_offs=(0, 0),
            clip_level_uv=(5000.0, 10000.0),
            drift_ppm=(5.0, 50.0),
            frame_faults=False,
        ),
        Scenario(
            name="plms",
            description="Several series of periodic limb movements; at most one cramp.",
            cramps=(0, 1),
            recurrence_p=0.1,
            turns_per_h=(1.0, 3.0),
            movements_per_h=(2.0, 5.0),
            twitches_per_h=(10.0, 40.0),
            plm_series=(3, 8),
            walk_after_cramp_p=0.3,
            stretch_after_cramp_p=0.3,
            night_walks=(0, 1),
            mains_p=0.3,
            wander_per_h=(0.0, 0.5),
            motion_artifacts_per_h=(0.2, 1.0),
            lead_offs=(0, 0),
            clip_level_uv=(5000.0, 10000.0),
            drift_ppm=(5.0, 50.0),
            frame_faults=False,
        ),
        Scenario(
            name="restless",
            description="Many movements, turns and trips out of bed; zero to two cramps.",
            cramps=(0, 2),
            recurrence_p=0.2,
            turns_per_h=(3.0, 6.0),
            movements_per_h=(6.0, 15.0),
            twitches_per_h=(20.0, 60.0),
            plm_series=(0, 2),
            walk_after_cramp_p=0.6,
            stretch_after_cramp_p=0.4,
            night_walks=(1, 3),
            mains_p=0.4,
            wander_per_h=(0.2, 1.0),
            motion_artifacts_per_h=(1.0, 4.0),
            lead_offs=(0, 1),
            clip_level_uv=(5000.0, 10000.0),
            drift_ppm=(5.0, 50.0),
            frame_faults=False,
        ),
        Scenario(
            name="faulty-sensor",
            description="Cramps seen through a bad sensor: hum, lead-off, clipping, lost and "
            "disordered frames, a drifting and jumping clock.",
            cramps=(1, 3),
            recurrence_p=0.25,
            turns_per_h=(1.0, 3.0),
            movements_per_h=(2.0, 5.0),
            twitches_per_h=(10.0, 40.0),
            plm_series=(0, 1),
            walk_after_cramp_p=0.4,
            stretch_after_cramp_p=0.3,
            night_walks=(0, 1),
            mains_p=1.0,
            wander_per_h=(1.0, 3.0),
            motion_artifacts_per_h=(2.0, 6.0),
            lead_offs=(1, 3),
            clip_level_uv=(300.0, 1200.0),
            drift_ppm=(50.0, 200.0),
            frame_faults=True,
        ),
    )
}


class ScenarioError(ValueError):
    """An unknown scenario name."""


def get_scenario(name: str) -> Scenario:
    """The preset called ``name``; raise :class:`ScenarioError` listing the presets otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None
