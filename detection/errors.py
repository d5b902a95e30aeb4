"""Typed errors of the detector: every bad input gets its own class and a precise message."""

from __future__ import annotations


class DetectorError(ValueError):
    """Base class: the detector refused its input or state; ``str(err)`` says why."""


class DetectorInputError(DetectorError):
    """A chunk is empty, has the wrong shape or dtype, or holds NaN/inf."""


class DetectorRateError(DetectorError):
    """A sample rate is outside the supported range or changed mid-stream."""


class DetectorTimeError(DetectorError):
    """A chunk starts before the end of the previous one (time went backwards)."""


class DetectorStateError(DetectorError):
    """The detector cannot do this now (finished, or a snapshot that is not a detector's)."""
