"""Real-time cramp detection: pure NumPy/SciPy, arrays in, typed events out, no I/O."""

from detection.config import DetectorConfig
from detection.errors import (
    DetectorError,
    DetectorInputError,
    DetectorRateError,
    DetectorStateError,
    DetectorTimeError,
)
from detection.offline import DetectionResult, detect_recording
from detection.stream import StreamDetector, push_acc_many, push_emg_many

__all__ = [
    "DetectionResult",
    "DetectorConfig",
    "DetectorError",
    "DetectorInputError",
    "DetectorRateError",
    "DetectorStateError",
    "DetectorTimeError",
    "StreamDetector",
    "detect_recording",
    "push_acc_many",
    "push_emg_many",
]
