"""The night's plan: when each physiological event happens, how long, how strong, which posture.

Events are placed without overlapping (a few seconds apart), so every label has one clean
interval. Distributions and their sources are in ``docs/simulator.md``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from simulator.scenarios import Scenario

LYING_POSTURES: Final = ("supine", "left", "right", "prone")
STANDING: Final = "standing"


@dataclass(frozen=True)
class PlannedEvent:
    """One event with the shape parameters its EMG and ACC are drawn from.

    Attributes
    ----------
    type : str
        ``cramp``, ``movement``, ``turn``, ``plm``, ``twitch``, ``walking`` or ``stretch``.
    onset_s, offset_s : float
        Seconds from the recording start.
    intensity : float
        Plateau EMG RMS as a fraction of the night's maximal-contraction RMS.
    rise_s, fall_s : float
        Ramp-up and taper lengths.
    median_start_hz, median_end_hz : float
        EMG median frequency at onset and at offset.
    depth : float
        Log-amplitude fluctuation of the plateau (0.3 ≈ ±30 %).
    corr_s : float
        Correlation time of those fluctuations.
    motion_g : float
        RMS of the limb's movement acceleration during the event, g.
    posture_to : str or None
        Posture after a turn (and the lying posture after walking).
    stride_hz : float
        Stride frequency while walking (0 otherwise).
    """

    type: str
    onset_s: float
    offset_s: float
    intensity: float
    rise_s: float
    fall_s: float
    median_start_hz: float
    median_end_hz: float
    depth: float = 0.15
    corr_s: float = 0.5
    motion_g: float = 0.0
    posture_to: str | None = None
    stride_hz: float = 0.0


@dataclass(frozen=True)
class PostureChange:
    """From ``onset_s`` the limb moves to ``posture`` over ``transition_s`` seconds."""

    onset_s: float
    transition_s: float
    posture: str


class _Timeline:
    """Occupied intervals, kept sorted, for placing events without overlap."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.starts: list[float] = []
        self.ends: list[float] = []

    def free(self, onset_s: float, offset_s: float, margin_s: float) -> bool:
        if onset_s < 1.0 or offset_s > self.duration_s - 1.0:
            return False
        i = bisect.bisect_left(self.starts, onset_s)
        if i > 0 and self.ends[i - 1] + margin_s > onset_s:
            return False
        return not (i < len(self.starts) and self.starts[i] < offset_s + margin_s)

    def take(self, onset_s: float, offset_s: float) -> None:
        i = bisect.bisect_left(self.starts, onset_s)
        self.starts.insert(i, onset_s)
        self.ends.insert(i, offset_s)

    def place(
        self, rng: np.random.Generator, length_s: float, margin_s: float, tries: int = 50
    ) -> float | None:
        """A random free onset for an event of ``length_s``, or None."""
        if length_s + 2.0 + 2 * margin_s >= self.duration_s:
            return None
        for _ in range(tries):
            onset = float(rng.uniform(1.0, self.duration_s - 1.0 - length_s))
            if self.free(onset, onset + length_s, margin_s):
                return onset
        return None


def _count(rng: np.random.Generator, per_hour: tuple[float, float], hours: float) -> int:
    return int(rng.poisson(rng.uniform(*per_hour) * hours))


def _lognormal(
    rng: np.random.Generator, median: float, sigma: float, low: float, high: float
) -> float:
    return float(np.clip(median * math.exp(sigma * rng.standard_normal()), low, high))


def plan_events(
    rng: np.random.Generator, scenario: Scenario, duration_s: float
) -> tuple[list[PlannedEvent], list[PostureChange], str]:
    """Draw the night's events.

    Returns
    -------
    events : list of PlannedEvent, sorted by onset
    posture_changes : list of PostureChange, sorted
    first_posture : str
    """
    hours = duration_s / 3600.0
    timeline = _Timeline(duration_s)
    events: list[PlannedEvent] = []
    for _ in range(int(rng.integers(scenario.cramps[0], scenario.cramps[1] + 1))):
        _place_cramp_run(rng, scenario, timeline, events)
    for _ in range(int(rng.integers(scenario.night_walks[0], scenario.night_walks[1] + 1))):
        length = rng.uniform(60.0, 300.0)
        onset = timeline.place(rng, length, 5.0)
        if onset is not None:
            events.append(_walking(rng, onset, length))
            timeline.take(onset, onset + length)
    for _ in range(int(rng.integers(scenario.plm_series[0], scenario.plm_series[1] + 1))):
        _place_plm_series(rng, timeline, events)
    for _ in range(_count(rng, scenario.turns_per_h, hours)):
        length = rng.uniform(2.0, 8.0)
        onset = timeline.place(rng, length, 3.0)
        if onset is not None:
            events.append(_turn(rng, onset, length))
            timeline.take(onset, onset + length)
    for _ in range(_count(rng, scenario.movements_per_h, hours)):
        length = rng.uniform(0.5, 5.0)
        onset = timeline.place(rng, length, 3.0)
        if onset is not None:
            events.append(_movement(rng, onset, length))
            timeline.take(onset, onset + length)
    for _ in range(_count(rng, scenario.twitches_per_h, hours)):
        length = rng.uniform(0.05, 0.25)
        onset = timeline.place(rng, length, 1.0, tries=10)
        if onset is not None:
            events.append(_twitch(rng, onset, length))
            timeline.take(onset, onset + length)
    events.sort(key=lambda e: e.onset_s)
    first_posture = str(rng.choice(LYING_POSTURES, p=[0.4, 0.25, 0.25, 0.1]))
    return events, _posture_changes(rng, events, first_posture), first_posture


def _place_cramp_run(
    rng: np.random.Generator,
    scenario: Scenario,
    timeline: _Timeline,
    events: list[PlannedEvent],
) -> None:
    """A cramp, possibly followed by a stretch or a walk, and by recurrences."""
    length = _lognormal(rng, 60.0, 0.9, 5.0, min(900.0, timeline.duration_s / 4))
    onset = timeline.place(rng, length + 400.0, 5.0)
    if onset is None:
        onset = timeline.place(rng, length, 5.0)
        if onset is None:
            return
    intensity = float(0.05 + 0.85 * rng.beta(2.0, 3.0))
    while True:
        cramp = _cramp(rng, onset, length, intensity)
        events.append(cramp)
        timeline.take(cramp.onset_s, cramp.offset_s)
        after = cramp.offset_s + rng.uniform(3.0, 30.0)
        follow: PlannedEvent | None = None
        if rng.random() < scenario.walk_after_cramp_p:
            follow = _walking(rng, after, rng.uniform(20.0, 180.0))
        elif rng.random() < scenario.stretch_after_cramp_p:
            follow = _stretch(rng, after, rng.uniform(10.0, 60.0))
        if follow is not None and timeline.free(follow.onset_s, follow.offset_s, 2.0):
            events.append(follow)
            timeline.take(follow.onset_s, follow.offset_s)
            after = follow.offset_s
        if rng.random() >= scenario.recurrence_p:
            return
        onset = after + rng.uniform(60.0, 600.0)
        length = _lognormal(rng, 40.0, 0.8, 5.0, min(600.0, timeline.duration_s / 6))
        intensity = float(np.clip(intensity * rng.uniform(0.7, 1.3), 0.05, 0.95))
        if not timeline.free(onset, onset + length, 5.0):
            return


def _place_plm_series(
    rng: np.random.Generator, timeline: _Timeline, events: list[PlannedEvent]
) -> None:
    """A PLM series: >= 4 movements of 0.5-10 s, onset-to-onset 5-90 s (WASM 2016)."""
    count = int(rng.integers(4, 60))
    typical_interval = rng.uniform(15.0, 40.0)  # Ferri et al.: modal 20-40 s
    durations = [_lognormal(rng, 1.8, 0.6, 0.5, 10.0) for _ in range(count)]
    intervals = [
        max(_lognormal(rng, typical_interval, 0.3, 5.0, 90.0), d + 1.0) for d in durations[:-1]
    ]
    intervals = [min(i, 90.0) for i in intervals]
    span = sum(intervals) + durations[-1]
    onset = timeline.place(rng, span, 5.0)
    if onset is None:
        return
    intensity = rng.uniform(0.03, 0.25)
    t = onset
    for k, duration in enumerate(durations):
        events.append(
            PlannedEvent(
                type="plm",
                onset_s=t,
                offset_s=t + duration,
                intensity=float(np.clip(intensity * rng.uniform(0.6, 1.4), 0.02, 0.4)),
                rise_s=min(0.2, duration / 4),
                fall_s=min(0.3, duration / 3),
                median_start_hz=rng.uniform(70.0, 130.0),
                median_end_hz=rng.uniform(70.0, 130.0),
                depth=0.2,
                corr_s=0.2,
                motion_g=rng.uniform(0.02, 0.15),
            )
        )
        if k < len(intervals):
            t += intervals[k]
    timeline.take(onset, onset + span)


def _cramp(rng: np.random.Generator, onset: float, length: float, intensity: float) -> PlannedEvent:
    median_start = rng.uniform(60.0, 120.0)
    return PlannedEvent(
        type="cramp",
        onset_s=onset,
        offset_s=onset + length,
        intensity=intensity,
        rise_s=min(rng.uniform(1.0, 15.0), 0.3 * length),
        fall_s=min(rng.uniform(2.0, 40.0), 0.35 * length),
        median_start_hz=median_start,
        median_end_hz=median_start * rng.uniform(0.75, 1.0),
        depth=rng.uniform(0.15, 0.45),
        corr_s=rng.uniform(0.3, 3.0),
        motion_g=rng.uniform(0.0, 0.12) if rng.random() < 0.5 else 0.0,
    )


def _walking(rng: np.random.Generator, onset: float, length: float) -> PlannedEvent:
    return PlannedEvent(
        type="walking",
        onset_s=onset,
        offset_s=onset + length,
        intensity=rng.uniform(0.15, 0.45),
        rise_s=0.1,
        fall_s=0.1,
        median_start_hz=rng.uniform(80.0, 130.0),
        median_end_hz=rng.uniform(80.0, 130.0),
        depth=0.2,
        corr_s=0.3,
        motion_g=rng.uniform(0.2, 0.6),
        posture_to=str(rng.choice(LYING_POSTURES)),
        stride_hz=rng.uniform(0.75, 1.0),
    )


def _stretch(rng: np.random.Generator, onset: float, length: float) -> PlannedEvent:
    return PlannedEvent(
        type="stretch",
        onset_s=onset,
        offset_s=onset + length,
        intensity=rng.uniform(0.03, 0.15),
        rise_s=min(3.0, length / 4),
        fall_s=min(3.0, length / 4),
        median_start_hz=rng.uniform(70.0, 120.0),
        median_end_hz=rng.uniform(70.0, 120.0),
        depth=0.2,
        corr_s=2.0,
        motion_g=rng.uniform(0.01, 0.05),
    )


def _turn(rng: np.random.Generator, onset: float, length: float) -> PlannedEvent:
    return PlannedEvent(
        type="turn",
        onset_s=onset,
        offset_s=onset + length,
        intensity=rng.uniform(0.05, 0.35),
        rise_s=min(0.5, length / 4),
        fall_s=min(1.0, length / 3),
        median_start_hz=rng.uniform(70.0, 130.0),
        median_end_hz=rng.uniform(70.0, 130.0),
        depth=0.35,
        corr_s=0.4,
        motion_g=rng.uniform(0.1, 0.5),
        posture_to="turn",  # resolved to a concrete posture in _posture_changes
    )


def _movement(rng: np.random.Generator, onset: float, length: float) -> PlannedEvent:
    return PlannedEvent(
        type="movement",
        onset_s=onset,
        offset_s=onset + length,
        intensity=rng.uniform(0.05, 0.4),
        rise_s=min(0.3, length / 4),
        fall_s=min(0.5, length / 3),
        median_start_hz=rng.uniform(70.0, 130.0),
        median_end_hz=rng.uniform(70.0, 130.0),
        depth=0.3,
        corr_s=0.3,
        motion_g=rng.uniform(0.05, 0.3),
    )


def _twitch(rng: np.random.Generator, onset: float, length: float) -> PlannedEvent:
    return PlannedEvent(
        type="twitch",
        onset_s=onset,
        offset_s=onset + length,
        intensity=rng.uniform(0.02, 0.2),
        rise_s=length / 4,
        fall_s=length / 3,
        median_start_hz=rng.uniform(80.0, 150.0),
        median_end_hz=rng.uniform(80.0, 150.0),
        depth=0.1,
        corr_s=0.05,
        motion_g=rng.uniform(0.0, 0.02),
    )


def _posture_changes(
    rng: np.random.Generator, events: list[PlannedEvent], first: str
) -> list[PostureChange]:
    changes: list[PostureChange] = []
    current = first
    for event in events:
        if event.type == "turn":
            options = [p for p in LYING_POSTURES if p != current]
            current = str(rng.choice(options))
            changes.append(PostureChange(event.onset_s, event.offset_s - event.onset_s, current))
        elif event.type == "walking":
            changes.append(PostureChange(event.onset_s, 2.0, STANDING))
            current = event.posture_to or current
            changes.append(PostureChange(event.offset_s - 2.0, 2.0, current))
    return changes
