"""Ground-truth labels of a simulated night and their JSON form (``<name>.labels.json``).

Every time is in seconds from the first sample of the recording (``onset_s``, ``offset_s``);
``start_us`` maps it to device-clock µs since the Unix epoch (UTC). The schema is documented in
``docs/simulator.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from simulator.recording import Annotation

SCHEMA_VERSION: Final = 1

EVENT_TYPES: Final = frozenset({"cramp", "movement", "turn", "plm", "twitch", "walking", "stretch"})
"""Physiological events: ``cramp`` is the only one a detector should report as an episode."""

SIGNAL_FAULT_TYPES: Final = frozenset(
    {"mains", "baseline_wander", "motion_artifact", "lead_off_flat", "lead_off_railed", "clipping"}
)
"""Faults present in the recorded samples themselves."""

FRAME_FAULT_TYPES: Final = frozenset(
    {"gap", "duplicate_frames", "out_of_order", "clock_drift", "clock_jump"}
)
"""Faults the publisher applies to the frames it sends (the recording has none of them)."""


class LabelsError(ValueError):
    """A labels file that cannot be read or does not follow the schema."""


@dataclass(frozen=True)
class LabelledEvent:
    """One physiological event.

    Attributes
    ----------
    type : str
        One of :data:`EVENT_TYPES`.
    onset_s, offset_s : float
        Seconds from the recording start; ``offset_s > onset_s``.
    intensity : float
        Plateau EMG RMS as a fraction of the night's maximal-contraction RMS
        (``NightLabels.mvc_rms_uv``), 0..1.
    """

    type: str
    onset_s: float
    offset_s: float
    intensity: float

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


@dataclass(frozen=True)
class LabelledFault:
    """One sensor or transmission fault.

    Attributes
    ----------
    type : str
        One of :data:`SIGNAL_FAULT_TYPES` or :data:`FRAME_FAULT_TYPES`.
    onset_s, offset_s : float
        Seconds from the recording start.
    intensity : float
        Severity 0..1 (per type in ``docs/simulator.md``).
    value : float
        The physical figure of the fault in ``unit`` (mains frequency in Hz, clock drift in
        ppm, clock jump in s, railed level in µV, clipping level in µV, ...); 0 when none.
    unit : str
        Unit of ``value`` ("" when none).
    """

    type: str
    onset_s: float
    offset_s: float
    intensity: float
    value: float = 0.0
    unit: str = ""

    @property
    def is_frame_fault(self) -> bool:
        return self.type in FRAME_FAULT_TYPES


@dataclass(frozen=True)
class NightLabels:
    """Everything known to be in one simulated night.

    Attributes
    ----------
    device_id : str
    start_us : int
        Device-clock µs (UTC epoch) of the first sample.
    scenario : str
        Scenario preset name (``"recorded"`` for replayed files).
    seed : int or None
        Seed the night was generated from, if any.
    emg_rate_hz, acc_rate_hz : float
        Sample rates (``acc_rate_hz`` None without accelerometer).
    duration_s : float
        Length of the recording.
    events, faults : tuple
        Sorted by onset.
    resting_rms_uv : float
        Night's resting (sleep) EMG RMS, µV.
    mvc_rms_uv : float
        RMS of a maximal voluntary contraction for this night's skin and electrodes, µV.
    mains_hz : float
        Mains frequency of the wearer's home (50 or 60 Hz), whether or not hum is present.
    profile : str
        Short description of the wearer profile ("" when none).
    """

    device_id: str
    start_us: int
    scenario: str
    seed: int | None
    emg_rate_hz: float
    acc_rate_hz: float | None
    duration_s: float
    events: tuple[LabelledEvent, ...] = ()
    faults: tuple[LabelledFault, ...] = ()
    resting_rms_uv: float = 0.0
    mvc_rms_uv: float = 0.0
    mains_hz: float = 50.0
    profile: str = ""
    schema: int = field(default=SCHEMA_VERSION)

    @property
    def cramps(self) -> tuple[LabelledEvent, ...]:
        """The events a detector should report, in onset order."""
        return tuple(e for e in self.events if e.type == "cramp")

    def events_of(self, kind: str) -> tuple[LabelledEvent, ...]:
        """Events of one type, in onset order."""
        return tuple(e for e in self.events if e.type == kind)

    def faults_of(self, kind: str) -> tuple[LabelledFault, ...]:
        """Faults of one type, in onset order."""
        return tuple(f for f in self.faults if f.type == kind)

    def to_json(self) -> str:
        """The labels as an indented JSON document."""
        return json.dumps(asdict(self), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> NightLabels:
        """Parse :meth:`to_json` output; raise :class:`LabelsError` for anything else."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise LabelsError(f"labels are not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise LabelsError("labels must be a JSON object")
        return _from_doc(doc)


def load_labels(path: str | Path) -> NightLabels:
    """Read a ``.labels.json`` file.

    Raises
    ------
    LabelsError
        The file is missing, unreadable or not a labels document.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    try:
        return NightLabels.from_json(text)
    except LabelsError as exc:
        raise LabelsError(f"{path}: {exc}") from None


def write_labels(path: str | Path, labels: NightLabels) -> None:
    """Write labels as ``path`` (UTF-8 JSON)."""
    Path(path).write_text(labels.to_json() + "\n", encoding="utf-8")


def _from_doc(doc: dict[str, Any]) -> NightLabels:
    schema = doc.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise LabelsError(f"labels schema {schema!r} is not {SCHEMA_VERSION}")
    required = ("device_id", "start_us", "scenario", "emg_rate_hz", "duration_s")
    missing = [key for key in required if key not in doc]
    if missing:
        raise LabelsError(f"labels lack {missing}")
    try:
        events = tuple(
            LabelledEvent(
                type=str(e["type"]),
                onset_s=float(e["onset_s"]),
                offset_s=float(e["offset_s"]),
                intensity=float(e["intensity"]),
            )
            for e in doc.get("events", [])
        )
        faults = tuple(
            LabelledFault(
                type=str(f["type"]),
                onset_s=float(f["onset_s"]),
                offset_s=float(f["offset_s"]),
                intensity=float(f["intensity"]),
                value=float(f.get("value", 0.0)),
                unit=str(f.get("unit", "")),
            )
            for f in doc.get("faults", [])
        )
        acc_rate = doc.get("acc_rate_hz")
        seed = doc.get("seed")
        labels = NightLabels(
            device_id=str(doc["device_id"]),
            start_us=int(doc["start_us"]),
            scenario=str(doc["scenario"]),
            seed=None if seed is None else int(seed),
            emg_rate_hz=float(doc["emg_rate_hz"]),
            acc_rate_hz=None if acc_rate is None else float(acc_rate),
            duration_s=float(doc["duration_s"]),
            events=events,
            faults=faults,
            resting_rms_uv=float(doc.get("resting_rms_uv", 0.0)),
            mvc_rms_uv=float(doc.get("mvc_rms_uv", 0.0)),
            mains_hz=float(doc.get("mains_hz", 50.0)),
            profile=str(doc.get("profile", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelsError(f"malformed labels entry: {exc!r}") from None
    items: list[LabelledEvent | LabelledFault] = [*labels.events, *labels.faults]
    for item in items:
        if not (math.isfinite(item.onset_s) and item.offset_s >= item.onset_s):
            raise LabelsError(f"{item.type} has onset {item.onset_s} after offset {item.offset_s}")
    for event in labels.events:
        if event.type not in EVENT_TYPES:
            raise LabelsError(f"unknown event type {event.type!r}")
    for fault in labels.faults:
        if fault.type not in SIGNAL_FAULT_TYPES | FRAME_FAULT_TYPES:
            raise LabelsError(f"unknown fault type {fault.type!r}")
    return labels


def labels_to_annotations(labels: NightLabels) -> tuple[Annotation, ...]:
    """EDF+ annotations for every event (``"cramp i=0.620"``) and signal fault
    (``"fault:mains i=0.300 v=50 Hz"``), in onset order. Frame faults are not in the recording
    and get no annotation."""
    notes = [
        Annotation(e.onset_s, e.duration_s, f"{e.type} i={e.intensity:.3f}") for e in labels.events
    ]
    for fault in labels.faults:
        if fault.is_frame_fault:
            continue
        text = f"fault:{fault.type} i={fault.intensity:.3f}"
        with_value = f"{text} v={fault.value:.4g} {fault.unit}"
        if fault.unit and len(with_value) <= 40:  # EDF+ annotations hold 40 characters
            text = with_value
        notes.append(Annotation(fault.onset_s, fault.offset_s - fault.onset_s, text))
    return tuple(sorted(notes, key=lambda a: a.onset_s))


_NOTE: Final = re.compile(
    r"^(?P<fault>fault:)?(?P<type>[a-z_]+) i=(?P<i>[-+0-9.eE]+)(?: v=(?P<v>\S+) (?P<unit>\S+))?$"
)


def annotations_to_labels(
    notes: Sequence[Annotation],
) -> tuple[tuple[LabelledEvent, ...], tuple[LabelledFault, ...]]:
    """Events and signal faults back from :func:`labels_to_annotations` notes; other
    annotations are ignored."""
    events: list[LabelledEvent] = []
    faults: list[LabelledFault] = []
    for note in notes:
        match = _NOTE.match(note.text.strip())
        if match is None:
            continue
        onset, offset = note.onset_s, note.onset_s + note.duration_s
        intensity = float(match["i"])
        if match["fault"] and match["type"] in SIGNAL_FAULT_TYPES:
            value = float(match["v"]) if match["v"] else 0.0
            faults.append(
                LabelledFault(match["type"], onset, offset, intensity, value, match["unit"] or "")
            )
        elif not match["fault"] and match["type"] in EVENT_TYPES:
            events.append(LabelledEvent(match["type"], onset, offset, intensity))
    return tuple(events), tuple(faults)
