"""Episode exports: CSV and HL7 FHIR R4 Observations (a ``collection`` Bundle)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Sequence
from typing import Any

from detection.events import Episode
from storage.localtime import from_us
from storage.metadata import DeviceRecord, WearerRecord

CSV_COLUMNS = (
    "episode_id",
    "device_id",
    "site",
    "onset_utc",
    "offset_utc",
    "duration_s",
    "peak_intensity",
    "mean_intensity",
    "peak_mvc_pct",
    "mean_mvc_pct",
    "confidence",
    "movement",
    "got_up_after",
    "quality_flags",
)

# The project's own code system for what no standard terminology names exactly. ICD-10-CM
# G47.62 "Sleep related leg cramps" is the closest standard concept and is sent alongside.
CODE_SYSTEM = "https://crampwatch.org/fhir/CodeSystem/crampwatch"
ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


def _iso(ts_us: int | None) -> str:
    return "" if ts_us is None else from_us(ts_us).isoformat().replace("+00:00", "Z")


def episodes_csv(episodes: Sequence[Episode]) -> str:
    """CSV text, one row per episode, times in ISO 8601 UTC."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in episodes:
        writer.writerow(
            [
                e.episode_id,
                e.device_id,
                e.site,
                _iso(e.onset_us),
                _iso(e.offset_us),
                f"{e.duration_s:.3f}",
                f"{e.peak_intensity:.3f}",
                f"{e.mean_intensity:.3f}",
                "" if e.peak_mvc_pct is None else f"{e.peak_mvc_pct:.2f}",
                "" if e.mean_mvc_pct is None else f"{e.mean_mvc_pct:.2f}",
                f"{e.confidence:.3f}",
                str(e.movement),
                "" if e.got_up_after is None else str(e.got_up_after).lower(),
                ";".join(str(f) for f in e.quality_flags),
            ]
        )
    return buffer.getvalue()


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": round(value, 4), "unit": unit, "system": UCUM_SYSTEM, "code": code}


def _component(code: str, display: str, quantity: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}]},
        "valueQuantity": quantity,
    }


def episode_observation(
    episode: Episode, wearer: WearerRecord, device: DeviceRecord | None
) -> dict[str, Any]:
    """One FHIR R4 Observation for an ended (``final``) or ongoing (``preliminary``) episode."""
    components = [
        _component(
            "peak-intensity",
            "Peak EMG envelope / noise floor",
            _quantity(episode.peak_intensity, "ratio", "1"),
        ),
        _component(
            "mean-intensity",
            "Mean EMG envelope / noise floor",
            _quantity(episode.mean_intensity, "ratio", "1"),
        ),
        _component(
            "confidence", "Detection confidence", _quantity(episode.confidence, "ratio", "1")
        ),
    ]
    if episode.peak_mvc_pct is not None:
        components.append(
            _component(
                "peak-mvc",
                "Peak % of maximum voluntary contraction",
                _quantity(episode.peak_mvc_pct, "%", "%"),
            )
        )
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": re.sub(r"[^A-Za-z0-9.-]", "-", episode.episode_id)[:64],
        "identifier": [{"system": f"{CODE_SYSTEM}/episode-id", "value": episode.episode_id}],
        "status": "preliminary" if episode.offset_us is None else "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "activity"}]}],
        "code": {
            "coding": [
                {
                    "system": CODE_SYSTEM,
                    "code": "nocturnal-leg-cramp-episode",
                    "display": "Nocturnal leg cramp episode (surface EMG)",
                },
                {"system": ICD10CM_SYSTEM, "code": "G47.62", "display": "Sleep related leg cramps"},
            ],
            "text": "Nocturnal leg cramp episode",
        },
        "subject": {"reference": f"Patient/{wearer.wearer_id}", "display": wearer.name},
        "effectivePeriod": {"start": _iso(episode.onset_us)},
        "valueQuantity": _quantity(episode.duration_s, "s", "s"),
        "bodySite": {"text": (device.site if device else episode.site).replace("_", " ")},
        "device": {"display": episode.device_id},
        "component": components,
    }
    if episode.offset_us is not None:
        observation["effectivePeriod"]["end"] = _iso(episode.offset_us)
    return observation


def fhir_bundle(
    episodes: Sequence[Episode], wearer: WearerRecord, devices: Sequence[DeviceRecord]
) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle of Observations, one per episode."""
    by_id = {d.device_id: d for d in devices}
    entries = []
    for episode in episodes:
        resource = episode_observation(episode, wearer, by_id.get(episode.device_id))
        entries.append(
            {"fullUrl": f"urn:uuid:{_uuid_of(episode.episode_id)}", "resource": resource}
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _uuid_of(episode_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{CODE_SYSTEM}/episode/{episode_id}"))
