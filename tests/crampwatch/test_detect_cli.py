"""``crampwatch detect`` and ``crampwatch eval`` on real files written by the simulator's writers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from typer.testing import CliRunner

from crampwatch.cli import build_app
from simulator.labels import LabelledEvent, NightLabels, write_labels
from simulator.recording import Recording, write_csv, write_edf

EMG_RATE_HZ = 1000.0
ACC_RATE_HZ = 50.0
START = datetime(2026, 1, 5, 23, 0, 0, tzinfo=UTC)
CRAMP_S = (120.0, 165.0)


def _band(rng: np.random.Generator, n: int) -> np.ndarray:
    sos = signal.butter(4, [30.0, 250.0], btype="bandpass", fs=EMG_RATE_HZ, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + 2000))[2000:]
    return x / np.sqrt(np.mean(x**2))


def cramp_night(rng: np.random.Generator, length_s: float = 240.0, cramp=CRAMP_S) -> Recording:
    """Resting calf EMG (3 µV RMS) with one 45 s, 120 µV RMS contraction; a still, supine leg."""
    n = int(length_s * EMG_RATE_HZ)
    emg = 3.0 * _band(rng, n)
    if cramp is not None:
        a, b = (int(t * EMG_RATE_HZ) for t in cramp)
        ramp = np.minimum(np.linspace(0, 1, b - a) * 10, 1.0) * np.minimum(
            np.linspace(1, 0, b - a) * 10, 1.0
        )
        emg[a:b] += 120.0 * ramp * _band(rng, b - a)
    m = int(length_s * ACC_RATE_HZ)
    acc = np.tile([0.0, 0.0, -1.0], (m, 1)) + rng.normal(0.0, 0.003, (m, 3))
    return Recording(emg[:, None], EMG_RATE_HZ, acc, ACC_RATE_HZ, START)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(11)
    d = tmp_path_factory.mktemp("nights")
    rec = cramp_night(rng)
    write_edf(d / "night.edf", rec)
    write_csv(d / "night.csv", rec)
    write_edf(d / "calm.edf", cramp_night(rng, cramp=None))
    return {"edf": d / "night.edf", "csv": d / "night.csv", "calm": d / "calm.edf", "dir": d}


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.mark.parametrize("kind", ["edf", "csv"])
def test_detect_prints_one_json_episode_per_line(recorded: dict[str, Path], kind: str) -> None:
    result = run("detect", recorded[kind], "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    ep = json.loads(lines[0])
    assert ep["onset_s"] == pytest.approx(CRAMP_S[0], abs=1.0)
    assert ep["offset_s"] == pytest.approx(CRAMP_S[1], abs=2.0)
    assert ep["duration_s"] == pytest.approx(ep["offset_s"] - ep["onset_s"], abs=0.01)
    assert ep["intensity"] > 1.0 and 0.0 <= ep["confidence"] <= 1.0
    onset = datetime.fromisoformat(ep["onset"])
    assert (onset - START).total_seconds() == pytest.approx(ep["onset_s"], abs=1e-3)


def test_detect_table_is_readable(recorded: dict[str, Path]) -> None:
    result = run("detect", recorded["edf"])
    assert result.exit_code == 0
    assert "duration_s" in result.stdout and "2026-01-05T23:02" in result.stdout


def test_detect_without_episodes_prints_nothing(recorded: dict[str, Path]) -> None:
    result = run("detect", recorded["calm"], "--json")
    assert result.exit_code == 0 and result.stdout == ""


def test_csv_without_time_column_needs_and_uses_the_rate_option(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rec = cramp_night(rng, length_s=200.0, cramp=(60.0, 100.0))
    rows = "\n".join(f"{v:.3f}" for v in rec.emg_uv[:, 0])
    path = tmp_path / "emg_only.csv"
    path.write_text("EMG calf\n" + rows + "\n")
    result = run("detect", path, "--json", "--emg-rate", "1000")
    assert result.exit_code == 0, result.output
    ep = json.loads(result.stdout.strip().splitlines()[0])
    assert ep["onset_s"] == pytest.approx(60.0, abs=1.0)
    assert "onset" not in ep  # no start time in the file


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("time_s,acc_x_g,acc_y_g,acc_z_g\n0,0,0,-1\n0.02,0,0,-1\n", "EMG"),
        ("this is not a recording", ""),
    ],
)
def test_detect_fails_with_one_clear_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    result = run("detect", path, "--json")
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]
    assert result.stdout == ""


def test_detect_rejects_a_bad_rate_option(recorded: dict[str, Path]) -> None:
    result = run("detect", recorded["csv"], "--emg-rate", "-5")
    assert result.exit_code != 0 and result.stderr.startswith("error: --emg-rate")


def test_detect_refuses_an_unsupported_rate(tmp_path: Path) -> None:
    rec = Recording(np.random.default_rng(1).normal(0, 3, (20000, 1)), 100.0)
    write_edf(tmp_path / "slow.edf", rec)
    result = run("detect", tmp_path / "slow.edf", "--json")
    assert result.exit_code != 0 and result.stderr.startswith("error: ")


def _labelled_suite(d: Path) -> None:
    rng = np.random.default_rng(2)
    for i, (scenario, cramp) in enumerate([("typical", (60.0, 110.0)), ("quiet", None)]):
        rec = cramp_night(rng, length_s=180.0, cramp=cramp)
        name = f"night-{i:03d}-{scenario}"
        write_edf(d / f"{name}.edf", rec)
        events = [LabelledEvent("cramp", *cramp, 0.5)] if cramp else []
        # A labelled turn where nothing happens in the signal: it must not count against us.
        events.append(LabelledEvent("turn", 150.0, 153.0, 0.2))
        labels = NightLabels(
            device_id=f"dev-{i}",
            start_us=rec.start_us,
            scenario=scenario,
            seed=i,
            emg_rate_hz=EMG_RATE_HZ,
            acc_rate_hz=ACC_RATE_HZ,
            duration_s=rec.duration_s,
            events=tuple(sorted(events, key=lambda e: e.onset_s)),
        )
        write_labels(d / f"{name}.labels.json", labels)


@pytest.mark.slow
def test_eval_scores_ours_and_the_anchors_on_the_same_nights(tmp_path: Path) -> None:
    _labelled_suite(tmp_path)
    out = tmp_path / "report.json"
    result = run("eval", tmp_path, "--json", out)
    assert result.exit_code == 0, result.output
    assert "neurokit2" in result.stdout and "biosppy" in result.stdout
    report = json.loads(out.read_text())
    ours = report["overall"]["crampwatch"]
    assert (ours["nights"], ours["n_truth"], ours["true_positives"]) == (2, 1, 1)
    assert ours["f1"] == 1.0 and ours["onset_error_median_s"] < 1.0
    assert set(report["scenarios"]) == {"typical", "quiet"}
    for anchor in ("neurokit2", "biosppy"):
        found = report["anchor_nights"][anchor]
        assert found["true_positives"] == 1  # a clean 50 s contraction: every detector sees it
    assert len(report["nights"]) == 2


def test_eval_without_anchors_and_errors(tmp_path: Path) -> None:
    _labelled_suite(tmp_path)
    result = run("eval", tmp_path, "--no-anchors")
    assert result.exit_code == 0, result.output
    assert "neurokit2" not in result.stdout
    assert "| crampwatch · typical | 1 | 1 | 1 |" in result.stdout
    (tmp_path / "night-000-typical.edf").unlink()
    result = run("eval", tmp_path, "--no-anchors")
    assert result.exit_code != 0 and "has no recording" in result.stderr
    result = run("eval", tmp_path / "nowhere")
    assert result.exit_code != 0 and result.stderr.startswith("error: ")


def test_eval_scores_the_nights_as_another_amplifier_or_noisier_electrodes_record_them(
    tmp_path: Path,
) -> None:
    _labelled_suite(tmp_path)
    out = tmp_path / "report.json"

    def ours(*options: str) -> dict:  # type: ignore[type-arg]
        result = run("eval", tmp_path, "--no-anchors", "--json", out, *options)
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        return {"stdout": result.stdout, **report, **report["overall"]["crampwatch"]}

    plain = ours()
    assert plain["perturbation"] is None and "EMG perturbed" not in plain["stdout"]
    assert (plain["true_positives"], plain["n_detected"]) == (1, 1)
    # every rule is relative to the noise floor: another gain finds the same episode
    louder = ours("--gain", "20")
    assert louder["perturbation"] == {"gain": 20.0, "noise_uv": 0.0, "seed": 0}
    assert "gain x20" in louder["stdout"]
    for key in ("true_positives", "n_detected", "onset_error_median_s", "offset_error_median_s"):
        assert louder[key] == plain[key]
    # noise of 200 µV RMS buries the 120 µV contraction (3 µV at rest): nothing is found
    buried = ours("--noise-uv", "200", "--noise-seed", "5")
    assert buried["perturbation"] == {"gain": 1.0, "noise_uv": 200.0, "seed": 5}
    assert (buried["true_positives"], buried["n_detected"]) == (0, 0)
    for bad in (["--gain", "0"], ["--gain", "-3"], ["--noise-uv", "-1"]):
        result = run("eval", tmp_path, "--no-anchors", *bad)
        assert result.exit_code == 2 and "error: --gain/--noise-uv:" in result.stderr


def test_anchor_excerpt_opens_before_the_first_cramp_and_stays_inside_the_night() -> None:
    from crampwatch.commands.detect import excerpt_window
    from detection.evaluation import Interval

    cramps = [Interval(5000.0, 5060.0), Interval(1000.0, 1030.0)]
    assert excerpt_window(cramps, 28800.0, None) == (0.0, 28800.0)
    assert excerpt_window(cramps, 28800.0, 1800.0) == (550.0, 2350.0)
    assert excerpt_window([], 28800.0, 1800.0) == (0.0, 1800.0)
    assert excerpt_window([Interval(28700.0, 28790.0)], 28800.0, 1800.0) == (27000.0, 28800.0)
    assert excerpt_window(cramps, 600.0, 1800.0) == (0.0, 600.0)
