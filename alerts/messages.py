"""The outbound alert documents (schema ``crampwatch.alert/1``), identical on MQTT and webhooks.

Every document carries ``event_id``, a deterministic idempotency key: a restarted worker that
re-sends an event sends the same ``event_id``, so receivers drop what they have already seen.
The full field list with examples is in ``docs/alerts.md``.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

from ingest.protocol import DEVICE_ID_PATTERN, TOPIC_PREFIX

SCHEMA: Final = "crampwatch.alert/1"
_NAMESPACE: Final = uuid.UUID("5b0c3f7e-6a55-4b43-9d55-2f0f6c1e9a41")


class AlertType(StrEnum):
    """Outbound event types."""

    CRAMP_STARTED = "cramp.started"
    CRAMP_ENDED = "cramp.ended"
    REDFLAG_RAISED = "redflag.raised"


class AlertMessageError(ValueError):
    """A document that is not a valid ``crampwatch.alert/1`` message; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def alerts_topic(device_id: str) -> str:
    """``crampwatch/v1/{device_id}/alerts``, the live alert topic of a device."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise AlertMessageError("bad_device_id", f"device id {device_id!r} is not allowed")
    return f"{TOPIC_PREFIX}/{device_id}/alerts"


def stable_id(*parts: str) -> str:
    """A UUID (text) derived only from ``parts``: the same inputs give the same id."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True)
class CrampAlert:
    """A ``cramp.started`` or ``cramp.ended`` event of one alert lifecycle.

    Attributes
    ----------
    type : AlertType
        ``cramp.started`` (sent at confirmation) or ``cramp.ended`` (sent once resolved).
    event_id, alert_id : str
        Idempotency key of this event; id of the lifecycle (stable across restarts).
    device_id, site : str
    episode_id : str
        The detector episode that opened the alert.
    episode_ids : tuple of str
        All detector episodes merged into this alert so far (pauses shorter than the merge gap).
    onset_us, confirmed_us : int
        Device-clock µs of the first episode's onset and confirmation.
    offset_us : int or None
        Device-clock µs of the last episode's offset (``cramp.ended`` only).
    duration_s : float or None
        ``offset - onset`` in s, pauses included (``cramp.ended`` only).
    active_s : float
        Seconds of contraction, pauses excluded (so far, for ``cramp.started``).
    peak_intensity, mean_intensity : float
        EMG envelope over the noise floor (ratio); mean is duration-weighted over episodes.
    peak_mvc_pct : float or None
        Peak as % of the calibrated MVC, when the device is calibrated.
    confidence : float
        Detector confidence 0..1 of the first episode.
    emitted_us : int
        Wall-clock µs when the backend created the event.
    """

    type: AlertType
    event_id: str
    alert_id: str
    device_id: str
    site: str
    episode_id: str
    episode_ids: tuple[str, ...]
    onset_us: int
    confirmed_us: int
    offset_us: int | None
    duration_s: float | None
    active_s: float
    peak_intensity: float
    mean_intensity: float
    peak_mvc_pct: float | None
    confidence: float
    emitted_us: int
    schema: str = field(default=SCHEMA)

    def to_json(self) -> str:
        """Compact JSON with sorted keys."""
        doc = asdict(self)
        doc["type"] = str(self.type)
        doc["episode_ids"] = list(self.episode_ids)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> CrampAlert:
        """Parse and validate a cramp document; raise :class:`AlertMessageError`."""
        doc = _load(text, (AlertType.CRAMP_STARTED, AlertType.CRAMP_ENDED))
        try:
            alert = cls(
                type=AlertType(doc["type"]),
                event_id=_str(doc, "event_id"),
                alert_id=_str(doc, "alert_id"),
                device_id=_str(doc, "device_id"),
                site=_str(doc, "site"),
                episode_id=_str(doc, "episode_id"),
                episode_ids=tuple(str(e) for e in doc["episode_ids"]),
                onset_us=int(doc["onset_us"]),
                confirmed_us=int(doc["confirmed_us"]),
                offset_us=None if doc["offset_us"] is None else int(doc["offset_us"]),
                duration_s=None if doc["duration_s"] is None else float(doc["duration_s"]),
                active_s=float(doc["active_s"]),
                peak_intensity=float(doc["peak_intensity"]),
                mean_intensity=float(doc["mean_intensity"]),
                peak_mvc_pct=None if doc["peak_mvc_pct"] is None else float(doc["peak_mvc_pct"]),
                confidence=float(doc["confidence"]),
                emitted_us=int(doc["emitted_us"]),
            )
        except KeyError as exc:
            raise AlertMessageError("missing_field", f"field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise AlertMessageError("bad_field", str(exc)) from None
        if (alert.type is AlertType.CRAMP_ENDED) != (alert.offset_us is not None):
            raise AlertMessageError("bad_field", "offset_us is set exactly on cramp.ended")
        return alert


@dataclass(frozen=True)
class RedFlagAlert:
    """A ``redflag.raised`` event: a night-level pattern a clinician should look at.

    Attributes
    ----------
    event_id, flag_id : str
        Idempotency key of this event; id of the stored red flag.
    device_id : str
    rule : str
        ``frequent_nights``, ``long_episode``, ``worsening_trend`` or ``sensor_off``.
    nights : tuple of str
        ISO dates (evening the night starts) of the nights that triggered the flag.
    summary : str
        One sentence for people.
    detail : dict
        Rule figures (counts, thresholds, slopes, p-values); JSON values only.
    emitted_us : int
        Wall-clock µs when the backend created the event.
    """

    event_id: str
    flag_id: str
    device_id: str
    rule: str
    nights: tuple[str, ...]
    summary: str
    detail: dict[str, Any]
    emitted_us: int
    type: AlertType = field(default=AlertType.REDFLAG_RAISED)
    schema: str = field(default=SCHEMA)

    def to_json(self) -> str:
        """Compact JSON with sorted keys."""
        doc = asdict(self)
        doc["type"] = str(self.type)
        doc["nights"] = list(self.nights)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> RedFlagAlert:
        """Parse and validate a red-flag document; raise :class:`AlertMessageError`."""
        doc = _load(text, (AlertType.REDFLAG_RAISED,))
        try:
            detail = doc["detail"]
            if not isinstance(detail, dict):
                raise TypeError("detail must be an object")
            return cls(
                event_id=_str(doc, "event_id"),
                flag_id=_str(doc, "flag_id"),
                device_id=_str(doc, "device_id"),
                rule=_str(doc, "rule"),
                nights=tuple(str(n) for n in doc["nights"]),
                summary=_str(doc, "summary"),
                detail=detail,
                emitted_us=int(doc["emitted_us"]),
            )
        except KeyError as exc:
            raise AlertMessageError("missing_field", f"field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise AlertMessageError("bad_field", str(exc)) from None


def _load(text: str | bytes, types: tuple[AlertType, ...]) -> dict[str, Any]:
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN / Infinity
        raise AlertMessageError("bad_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise AlertMessageError("bad_json", "the document is not a JSON object")
    if doc.get("schema") != SCHEMA:
        raise AlertMessageError("bad_schema", f"schema {doc.get('schema')!r} is not {SCHEMA}")
    if doc.get("type") not in {str(t) for t in types}:
        allowed = ", ".join(str(t) for t in types)
        raise AlertMessageError("bad_type", f"type {doc.get('type')!r} is not one of {allowed}")
    for key, value in doc.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise AlertMessageError("bad_field", f"{key} is not finite")
    return doc


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in an alert document")


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")
    return value
