"""Labels JSON and their EDF+ annotation form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.labels import (
    EVENT_TYPES,
    FRAME_FAULT_TYPES,
    SIGNAL_FAULT_TYPES,
    LabelledEvent,
    LabelledFault,
    LabelsError,
    NightLabels,
    annotations_to_labels,
    labels_to_annotations,
    load_labels,
    write_labels,
)

times = st.floats(0.0, 30_000.0, allow_nan=False)


@st.composite
def events(draw: st.DrawFn) -> LabelledEvent:
    onset = draw(times)
    return LabelledEvent(
        draw(st.sampled_from(sorted(EVENT_TYPES))),
        onset,
        onset + draw(st.floats(0.0, 900.0)),
        draw(st.floats(0.0, 1.0)),
    )


@st.composite
def faults(draw: st.DrawFn) -> LabelledFault:
    onset = draw(times)
    return LabelledFault(
        draw(st.sampled_from(sorted(SIGNAL_FAULT_TYPES | FRAME_FAULT_TYPES))),
        onset,
        onset + draw(st.floats(0.0, 900.0)),
        draw(st.floats(0.0, 1.0)),
        draw(st.floats(-1e4, 1e4)),
        draw(st.sampled_from(["", "Hz", "uV", "ppm", "s"])),
    )


@st.composite
def night_labels(draw: st.DrawFn) -> NightLabels:
    return NightLabels(
        device_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
        start_us=draw(st.integers(0, 2**62 - 1)),
        scenario=draw(st.sampled_from(["quiet", "typical", "recorded"])),
        seed=draw(st.none() | st.integers(0, 2**63)),
        emg_rate_hz=draw(st.sampled_from([500.0, 1000.0, 4000.0])),
        acc_rate_hz=draw(st.none() | st.sampled_from([12.5, 50.0])),
        duration_s=draw(st.floats(10.0, 40_000.0)),
        events=tuple(draw(st.lists(events(), max_size=8))),
        faults=tuple(draw(st.lists(faults(), max_size=8))),
        resting_rms_uv=draw(st.floats(0.0, 10.0)),
        mvc_rms_uv=draw(st.floats(0.0, 1000.0)),
        mains_hz=draw(st.sampled_from([50.0, 60.0])),
        profile=draw(st.text(max_size=20)),
    )


@given(night_labels())
def test_json_round_trip_is_exact(labels: NightLabels) -> None:
    assert NightLabels.from_json(labels.to_json()) == labels


@given(night_labels())
def test_annotations_carry_events_and_signal_faults(labels: NightLabels) -> None:
    notes = labels_to_annotations(labels)
    assert all(len(note.text) <= 40 for note in notes)
    got_events, got_faults = annotations_to_labels(notes)
    assert sorted(e.type for e in got_events) == sorted(e.type for e in labels.events)
    want_faults = [f for f in labels.faults if not f.is_frame_fault]
    assert sorted(f.type for f in got_faults) == sorted(f.type for f in want_faults)
    for got in got_events:
        assert any(
            e.type == got.type
            and e.onset_s == got.onset_s
            and abs(e.intensity - got.intensity) < 6e-4
            for e in labels.events
        )


def test_file_round_trip_and_schema_fields(tmp_path: Path) -> None:
    labels = NightLabels(
        "dev-1",
        1_767_652_200_000_000,
        "typical",
        7,
        1000.0,
        50.0,
        600.0,
        (LabelledEvent("cramp", 10.0, 70.5, 0.4),),
        (LabelledFault("mains", 0.0, 600.0, 0.2, 50.0, "Hz"),),
    )
    path = tmp_path / "n.labels.json"
    write_labels(path, labels)
    doc = json.loads(path.read_text())
    assert doc["events"][0] == {
        "type": "cramp",
        "onset_s": 10.0,
        "offset_s": 70.5,
        "intensity": 0.4,
    }
    assert doc["faults"][0]["type"] == "mains"
    assert {"device_id", "start_us", "scenario", "seed", "emg_rate_hz", "acc_rate_hz"} <= set(doc)
    assert load_labels(path) == labels
    assert load_labels(path).cramps == labels.events


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"device_id": "a"}', "lack"),
        (
            '{"device_id":"a","start_us":0,"scenario":"x","emg_rate_hz":1000,"duration_s":10,'
            '"events":[{"type":"sneeze","onset_s":0,"offset_s":1,"intensity":0}]}',
            "unknown event type",
        ),
        (
            '{"device_id":"a","start_us":0,"scenario":"x","emg_rate_hz":1000,"duration_s":10,'
            '"events":[{"type":"cramp","onset_s":5,"offset_s":1,"intensity":0}]}',
            "after offset",
        ),
        ('{"schema": 9}', "schema"),
    ],
)
def test_malformed_labels_raise_labels_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.labels.json"
    path.write_text(text)
    with pytest.raises(LabelsError, match=message):
        load_labels(path)


def test_missing_labels_file_is_a_labels_error(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="cannot read"):
        load_labels(tmp_path / "none.json")
