"""Detector outputs: the episode event contract every other stage consumes.

Times are integers in µs since the Unix epoch on the *device* clock (UTC); arrival time is a
separate field owned by ``ingest/``. Intensities are ratios to the adaptive noise floor (so 1.0
means "at the floor"), and ``%MVC`` only when the device has a calibration value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    """Lifecycle of an episode as the stream advances."""

    STARTED = "started"  # emitted at confirmation; onset is back-dated
    UPDATED = "updated"  # periodic while the episode lasts (duration / intensity so far)
    ENDED = "ended"  # offset known; the episode is final


class Movement(StrEnum):
    """What the limb did during the episode, from the accelerometer."""

    STILL = "still"
    MOVING = "moving"
    UNKNOWN = "unknown"  # no accelerometer data covered the episode


class QualityFlag(StrEnum):
    """Signal-quality problems; they raise flags, never episodes."""

    LEAD_OFF = "lead_off"
    FLAT_LINE = "flat_line"
    CLIPPING = "clipping"
    MAINS = "mains"
    MOTION_ARTIFACT = "motion_artifact"
    GAP = "gap"
    NO_ACC = "no_acc"


@dataclass(frozen=True)
class Episode:
    """One involuntary calf contraction (a cramp), as known at the time of the event.

    Attributes
    ----------
    episode_id : str
        Deterministic: ``f"{device_id}:{onset_us}"``, so replays and restarts give the same id.
    onset_us, confirmed_us, offset_us : int
        Device-clock µs. ``offset_us`` is None until the episode has ended.
    duration_s : float
        Offset (or latest sample, while open) minus onset, in seconds.
    peak_intensity, mean_intensity : float
        EMG envelope relative to the noise floor (dimensionless ratio, >= 1).
    peak_mvc_pct, mean_mvc_pct : float or None
        Percent of the device's calibrated maximum voluntary contraction, when known.
    confidence : float
        0..1.
    movement : Movement
        Limb still or moving during the episode.
    got_up_after : bool or None
        Whether the wearer got up within a minute after the offset (None until known).
    quality_flags : tuple of QualityFlag
        Quality problems seen during the episode.
    """

    episode_id: str
    device_id: str
    site: str
    onset_us: int
    confirmed_us: int
    offset_us: int | None
    duration_s: float
    peak_intensity: float
    mean_intensity: float
    confidence: float
    movement: Movement = Movement.UNKNOWN
    got_up_after: bool | None = None
    peak_mvc_pct: float | None = None
    mean_mvc_pct: float | None = None
    quality_flags: tuple[QualityFlag, ...] = field(default_factory=tuple)

    @property
    def is_open(self) -> bool:
        return self.offset_us is None


@dataclass(frozen=True)
class EpisodeEvent:
    """A change in an episode's lifecycle; ``at_us`` is the signal time it was emitted."""

    kind: EventKind
    episode: Episode
    at_us: int


@dataclass(frozen=True)
class QualityEvent:
    """A signal-quality fault interval. ``end_us`` is None while the fault lasts."""

    device_id: str
    flag: QualityFlag
    start_us: int
    end_us: int | None
    at_us: int


DetectorEvent = EpisodeEvent | QualityEvent


@dataclass(frozen=True)
class SeriesPoint:
    """One 1 Hz summary sample of a device's signals (for pictures and dashboards).

    Attributes
    ----------
    ts_us : int
        Device-clock µs at the start of the 1 s bin.
    envelope_uv, floor_uv : float or None
        Mean EMG RMS envelope and adaptive noise floor over the bin, µV (None: no EMG).
    activity_g : float or None
        Mean dynamic acceleration magnitude over the bin, g (None: no ACC).
    posture : str or None
        ``supine`` / ``prone`` / ``left`` / ``right`` / ``upright`` from the gravity vector.
    """

    ts_us: int
    envelope_uv: float | None
    floor_uv: float | None
    activity_g: float | None
    posture: str | None
