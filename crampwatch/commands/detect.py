"""``crampwatch detect`` (one recorded night) and ``crampwatch eval`` (a labelled suite).

``eval`` scores our detector and the two published anchors (NeuroKit2, BioSPPy) on the nights
``crampwatch simulate --suite DIR`` writes: ``<name>.labels.json`` next to ``<name>.edf`` (or
``.csv``), searched recursively.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from crampwatch.commands._common import fail
from detection.anchors import ANCHORS, AnchorUnavailable, EpisodeRule, anchor_episodes
from detection.evaluation import (
    EvaluationError,
    Interval,
    LabelledInterval,
    NightScore,
    Perturbation,
    Summary,
    clip_to,
    score_night,
    summarize,
)
from detection.events import Episode

OURS = "crampwatch"
RECORDING_SUFFIXES = (".edf", ".csv")


# ----------------------------------------------------------------------------------- detect


def episode_record(episode: Episode, start_us: int, start: datetime | None) -> dict[str, Any]:
    """One episode as the JSON object ``crampwatch detect --json`` prints.

    Parameters
    ----------
    episode : Episode
    start_us : int
        Device-clock µs of the first sample (times are printed relative to it).
    start : datetime or None
        UTC time of the first sample; adds ISO-8601 ``onset``/``offset`` when given.
    """
    offset_us = episode.offset_us if episode.offset_us is not None else episode.onset_us
    record: dict[str, Any] = {
        "onset_s": round((episode.onset_us - start_us) / 1e6, 3),
        "offset_s": round((offset_us - start_us) / 1e6, 3),
        "duration_s": round(episode.duration_s, 3),
        "confirmed_s": round((episode.confirmed_us - start_us) / 1e6, 3),
        "intensity": round(episode.peak_intensity, 3),
        "mean_intensity": round(episode.mean_intensity, 3),
        "confidence": round(episode.confidence, 3),
        "movement": str(episode.movement),
        "got_up_after": episode.got_up_after,
        "quality_flags": [str(flag) for flag in episode.quality_flags],
    }
    if episode.peak_mvc_pct is not None:
        record["peak_mvc_pct"] = round(episode.peak_mvc_pct, 2)
    if start is not None:
        record["onset"] = _iso(start, episode.onset_us - start_us)
        record["offset"] = _iso(start, offset_us - start_us)
    return record


def _iso(start: datetime, delta_us: int) -> str:
    return (start + timedelta(microseconds=delta_us)).astimezone(UTC).isoformat()


def _print_table(records: Sequence[dict[str, Any]]) -> None:
    if not records:
        typer.echo("no cramp episodes found")
        return
    when = "onset" if "onset" in records[0] else "onset_s"
    typer.echo(
        f"{'#':>3}  {when:<32} {'duration_s':>10} {'intensity':>9} {'confidence':>10}  movement"
    )
    for i, rec in enumerate(records, 1):
        typer.echo(
            f"{i:>3}  {rec[when]!s:<32} {rec['duration_s']:>10.1f} {rec['intensity']:>9.1f}"
            f" {rec['confidence']:>10.2f}  {rec['movement']}"
        )


def detect_file(
    path: Path, *, emg_rate_hz: float | None = None, acc_rate_hz: float | None = None
) -> list[dict[str, Any]]:
    """Read a recorded night and return its episodes as :func:`episode_record` objects.

    Raises
    ------
    simulator.recording.RecordingError
        Unreadable file, missing channel, bad rate.
    detection.errors.DetectorError
        A recording the detector refuses (unsupported rate, NaN, ...).
    """
    from detection.offline import detect_recording
    from simulator.recording import read_recording

    rec = read_recording(path, emg_rate_hz=emg_rate_hz, acc_rate_hz=acc_rate_hz)
    result = detect_recording(
        rec.emg_uv,
        rec.emg_rate_hz,
        rec.acc_g,
        rec.acc_rate_hz,
        start_us=rec.start_us,
        device_id=path.stem,
    )
    return [episode_record(e, rec.start_us, rec.start) for e in result.episodes]


# ------------------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class NightResult:
    """Scores of one labelled night for every detector that ran on it.

    Attributes
    ----------
    name, scenario : str
    duration_s : float
        Length of the night.
    scores : dict of str to NightScore
        Our detector on the whole night (key ``crampwatch``).
    excerpt_scores : dict of str to NightScore
        Ours and the anchors on the excerpt the anchors ran on (empty when they did not run).
    excerpt_s : float
        Length of that excerpt, seconds (see :func:`excerpt_window`).
    seconds : dict of str to float
        Wall-clock time each detector took (the anchors: on the excerpt).
    """

    name: str
    scenario: str
    duration_s: float
    scores: dict[str, NightScore]
    excerpt_scores: dict[str, NightScore]
    excerpt_s: float
    seconds: dict[str, float]


def find_nights(directory: Path) -> list[tuple[Path, Path]]:
    """Pairs (labels file, recording) under ``directory``, sorted by name."""
    pairs = []
    for labels_path in sorted(directory.rglob("*.labels.json")):
        stem = labels_path.name.removesuffix(".labels.json")
        recordings = [labels_path.with_name(stem + s) for s in RECORDING_SUFFIXES]
        found = [p for p in recordings if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{labels_path} has no recording {stem}.edf or {stem}.csv")
        pairs.append((labels_path, found[0]))
    return pairs


def evaluate_night(
    labels_path: Path,
    recording_path: Path,
    anchors: Sequence[str],
    rule: EpisodeRule,
    anchor_s: float | None = None,
    perturbation: Perturbation = Perturbation(),
) -> NightResult:
    """Run our detector and ``anchors`` over one labelled night and score each.

    The anchors run on an ``anchor_s`` excerpt (:func:`excerpt_window`; the whole night when
    None); ours runs on the whole night and is scored both on it and, next to the anchors, on
    their excerpt. All of them see the EMG after ``perturbation``.
    """
    from detection.offline import detect_recording
    from simulator.labels import FRAME_FAULT_TYPES, load_labels
    from simulator.recording import read_recording

    labels = load_labels(labels_path)
    rec = read_recording(recording_path)
    truth = [Interval(e.onset_s, e.offset_s) for e in labels.cramps]
    lookalikes = [
        LabelledInterval(e.type, Interval(e.onset_s, e.offset_s))
        for e in labels.events
        if e.type != "cramp"
    ] + [
        LabelledInterval(f.type, Interval(f.onset_s, f.offset_s))
        for f in labels.faults
        if f.type not in FRAME_FAULT_TYPES
    ]
    name = labels_path.name.removesuffix(".labels.json")
    emg_uv = perturbation.apply(rec.emg_uv, name)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    result = detect_recording(
        emg_uv,
        rec.emg_rate_hz,
        rec.acc_g,
        rec.acc_rate_hz,
        start_us=labels.start_us,
        device_id=labels.device_id,
    )
    seconds[OURS] = time.perf_counter() - t0
    ours = [
        Interval(
            (e.onset_us - labels.start_us) / 1e6,
            ((e.offset_us if e.offset_us is not None else e.onset_us) - labels.start_us) / 1e6,
        )
        for e in result.episodes
    ]
    scores = {OURS: score_night(truth, ours, lookalikes, name=name, scenario=labels.scenario)}
    lo_s, hi_s = excerpt_window(truth, rec.duration_s, anchor_s)
    excerpt: dict[str, list[Interval]] = {OURS: clip_to(ours, lo_s, hi_s)}
    emg = emg_uv[round(lo_s * rec.emg_rate_hz) : round(hi_s * rec.emg_rate_hz)]
    for anchor in anchors:
        t0 = time.perf_counter()
        found = anchor_episodes(anchor, emg, rec.emg_rate_hz, rule)
        excerpt[anchor] = [Interval(lo_s + e.onset_s, lo_s + e.offset_s) for e in found]
        seconds[anchor] = time.perf_counter() - t0
    excerpt_truth = clip_to(truth, lo_s, hi_s)
    excerpt_lookalikes = [
        LabelledInterval(item.kind, Interval(max(lo_s, item.interval.onset_s), iv.offset_s))
        for item in lookalikes
        for iv in clip_to([item.interval], -math.inf, hi_s)
        if iv.offset_s > lo_s
    ]
    excerpt_scores = (
        {
            who: score_night(
                excerpt_truth, found, excerpt_lookalikes, name=name, scenario=labels.scenario
            )
            for who, found in excerpt.items()
        }
        if anchors
        else {}
    )
    return NightResult(
        name, labels.scenario, rec.duration_s, scores, excerpt_scores, hi_s - lo_s, seconds
    )


def excerpt_window(
    truth: Sequence[Interval], duration_s: float, length_s: float | None
) -> tuple[float, float]:
    """Start and end (s) of the excerpt the anchors run on.

    The whole night when ``length_s`` is None; else ``length_s`` opening a quarter of its
    length before the first labelled cramp (at the start of a night without one), so that
    the excerpt holds cramps as well as look-alikes. Every detector is scored on it.
    """
    if length_s is None or length_s >= duration_s:
        return 0.0, duration_s
    first = min((t.onset_s for t in truth), default=0.0)
    lo_s = min(max(0.0, first - length_s / 4), duration_s - length_s)
    return lo_s, lo_s + length_s


def _evaluate_pair(
    args: tuple[Path, Path, tuple[str, ...], EpisodeRule, float | None, Perturbation],
) -> NightResult:
    return evaluate_night(*args)


def anchor_subset(results: Sequence[tuple[str, str]], count: int) -> set[str]:
    """Names of ``count`` nights spread round-robin over scenarios (every scenario first)."""
    by_scenario: dict[str, list[str]] = {}
    for name, scenario in results:
        by_scenario.setdefault(scenario, []).append(name)
    chosen: list[str] = []
    queues = [list(names) for _, names in sorted(by_scenario.items())]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return set(chosen)


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def summary_row(label: str, s: Summary) -> str:
    """One table row of a :class:`Summary`."""
    causes = ", ".join(f"{k} {v:.2f}" for k, v in s.false_alarms_by_cause.items()) or "-"
    return (
        f"| {label} | {s.nights} | {s.n_truth} | {s.n_detected} | {_fmt(s.precision)} | "
        f"{_fmt(s.recall)} | {_fmt(s.f1)} | {_fmt(s.onset_error_median_s, 2)} / "
        f"{_fmt(s.onset_error_p90_s, 2)} | {_fmt(s.offset_error_median_s, 2)} / "
        f"{_fmt(s.offset_error_p90_s, 2)} | {s.false_alarms_per_night:.2f} | {causes} |"
    )


TABLE_HEADER = (
    "| detector | nights | cramps | detected | precision | recall | F1 | onset err med/p90 s "
    "| offset err med/p90 s | FA/night | FA/night by cause |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def eval_report(
    results: Sequence[NightResult],
    anchor_names: set[str],
    perturbation: Perturbation = Perturbation(),
) -> dict[str, Any]:
    """Summaries: ours on all nights and per scenario; ours and anchors on the anchor nights;
    the perturbation the nights' EMG went through (``None``: none)."""
    ours_all = [r.scores[OURS] for r in results]
    report: dict[str, Any] = {"overall": {OURS: summarize(ours_all)}, "scenarios": {}}
    report["perturbation"] = None if perturbation.is_identity else asdict(perturbation)
    for scenario in sorted({r.scenario for r in results}):
        report["scenarios"][scenario] = summarize(
            [r.scores[OURS] for r in results if r.scenario == scenario]
        )
    subset = [r for r in results if r.name in anchor_names and r.excerpt_scores]
    if subset:
        report["anchor_nights"] = {
            who: summarize([r.excerpt_scores[who] for r in subset])
            for who in (OURS, *ANCHORS)
            if all(who in r.excerpt_scores for r in subset)
        }
        report["anchor_hours"] = sum(r.excerpt_s for r in subset) / 3600
    hours = sum(r.duration_s for r in results) / 3600
    report["timing"] = {
        who: {
            "seconds": sum(r.seconds[who] for r in results if who in r.seconds),
            "hours_of_signal": sum(
                (r.duration_s if who == OURS else r.excerpt_s) for r in results if who in r.seconds
            )
            / 3600,
        }
        for who in (OURS, *ANCHORS)
        if any(who in r.seconds for r in results)
    }
    report["hours"] = hours
    return report


def print_report(report: dict[str, Any]) -> None:
    """Print :func:`eval_report` as Markdown tables."""
    typer.echo(f"## All nights ({report['hours']:.1f} h of signal)\n")
    if report.get("perturbation"):
        p = report["perturbation"]
        typer.echo(
            f"EMG perturbed: gain x{p['gain']:g}, white noise {p['noise_uv']:g} µV RMS "
            f"(seed {p['seed']})\n"
        )
    typer.echo(TABLE_HEADER)
    typer.echo(summary_row(OURS, report["overall"][OURS]))
    for scenario, summary in report["scenarios"].items():
        typer.echo(summary_row(f"{OURS} · {scenario}", summary))
    if "anchor_nights" in report:
        typer.echo(f"\n## Ours vs anchors on the same signal ({report['anchor_hours']:.1f} h)\n")
        typer.echo(TABLE_HEADER)
        for who, summary in report["anchor_nights"].items():
            typer.echo(summary_row(who, summary))
    typer.echo("\n| detector | seconds | real-time factor |\n|---|---|---|")
    for who, t in report["timing"].items():
        factor = t["hours_of_signal"] * 3600 / t["seconds"] if t["seconds"] > 0 else math.inf
        typer.echo(f"| {who} | {t['seconds']:.1f} | {factor:,.0f}x |")


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its summaries as plain dicts (for ``--json OUT``)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Summary):
            return {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(value).items()
            }
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {str(k): plain(v) for k, v in report.items()}


def run_eval(
    directory: Path,
    *,
    anchors: Sequence[str] = ANCHORS,
    anchor_nights: int | None = None,
    anchor_s: float | None = None,
    rule: EpisodeRule | None = None,
    jobs: int = 1,
    perturbation: Perturbation = Perturbation(),
) -> tuple[list[NightResult], set[str]]:
    """Evaluate every labelled night under ``directory``.

    Parameters
    ----------
    directory : Path
    anchors : sequence of str
        Anchors to run (empty: ours only).
    anchor_nights : int, optional
        Run the anchors on this many nights only, spread over the scenarios (they are slow).
    anchor_s : float, optional
        Run the anchors on an excerpt of this length of those nights (:func:`excerpt_window`).
    rule : EpisodeRule, optional
        Minimum-duration rule for the anchors; default from the detector's own rules.
    jobs : int
        Worker processes.
    perturbation : Perturbation
        Applied to every night's EMG before any detector sees it (default: none).
    """
    from simulator.labels import load_labels

    if rule is None:
        rule = default_anchor_rule()
    pairs = find_nights(directory)
    if not pairs:
        raise FileNotFoundError(f"{directory} holds no *.labels.json nights")
    meta = [(lp.name.removesuffix(".labels.json"), load_labels(lp).scenario) for lp, _ in pairs]
    chosen = {n for n, _ in meta} if anchor_nights is None else anchor_subset(meta, anchor_nights)
    tasks = [
        (lp, rp, tuple(anchors) if name in chosen else (), rule, anchor_s, perturbation)
        for (lp, rp), (name, _) in zip(pairs, meta, strict=True)
    ]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_evaluate_pair, tasks))
    else:
        results = [_evaluate_pair(task) for task in tasks]
    return results, chosen if anchors else set()


def default_anchor_rule() -> EpisodeRule:
    """The anchors' rule, from ours: confirmation time as minimum, off-hold as merge gap."""
    from detection.config import DetectorConfig

    config = DetectorConfig()
    return EpisodeRule(min_duration_s=config.confirm_s, merge_gap_s=config.off_hold_s)


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect_command(
        path: Path = typer.Argument(..., help="Recorded night: EDF/EDF+ (.edf) or CSV (.csv)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per episode/line."),
        emg_rate: float | None = typer.Option(
            None, "--emg-rate", help="EMG sample rate, Hz (CSV; EDF carries its own)."
        ),
        acc_rate: float | None = typer.Option(
            None, "--acc-rate", help="Accelerometer sample rate, Hz (CSV; EDF carries its own)."
        ),
    ) -> None:
        """Detect cramp episodes in a recorded night and print them."""
        from detection.errors import DetectorError
        from simulator.recording import RecordingError

        for option, value in (("--emg-rate", emg_rate), ("--acc-rate", acc_rate)):
            if value is not None and not (math.isfinite(value) and value > 0):
                fail(f"{option} must be a positive number of Hz, got {value}")
        try:
            records = detect_file(path, emg_rate_hz=emg_rate, acc_rate_hz=acc_rate)
        except RecordingError as exc:
            fail(str(exc))
        except DetectorError as exc:
            fail(f"{path}: {exc}")
        if as_json:
            for record in records:
                typer.echo(json.dumps(record, allow_nan=False))
        else:
            _print_table(records)

    @app.command("eval")
    def eval_command(
        directory: Path = typer.Argument(..., help="Suite written by `crampwatch simulate`."),
        with_anchors: bool = typer.Option(
            True, "--anchors/--no-anchors", help="Also run NeuroKit2 and BioSPPy."
        ),
        anchor_nights: int | None = typer.Option(
            None, "--anchor-nights", min=1, help="Run the anchors on this many nights only."
        ),
        anchor_hours: float | None = typer.Option(
            None, "--anchor-hours", min=0.01, help="Run the anchors on this much of each night."
        ),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
        json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
        gain: float = typer.Option(
            1.0, "--gain", help="Multiply every night's EMG by this first (another amplifier)."
        ),
        noise_uv: float = typer.Option(
            0.0, "--noise-uv", help="Then add white noise of this RMS, µV (noisier electrodes)."
        ),
        noise_seed: int = typer.Option(0, "--noise-seed", help="Seed of that noise."),
    ) -> None:
        """Score the detector (and the anchors) on labelled nights; print the tables.

        --gain and --noise-uv score the same nights as another amplifier or noisier electrodes
        would have recorded them; every detector sees the same perturbed signal."""
        from detection.errors import DetectorError
        from simulator.labels import LabelsError
        from simulator.recording import RecordingError

        if not directory.is_dir():
            fail(f"{directory}: not a directory")
        try:
            perturbation = Perturbation(gain, noise_uv, noise_seed)
        except EvaluationError as exc:
            fail(f"--gain/--noise-uv: {exc}")
        anchors = [a for a in ANCHORS if with_anchors]
        for missing in [a for a in anchors if importlib.util.find_spec(a) is None]:
            typer.echo(f"note: {missing} is not installed; its rows are left out", err=True)
            anchors.remove(missing)
        try:
            results, chosen = run_eval(
                directory,
                anchors=anchors,
                anchor_nights=anchor_nights,
                anchor_s=None if anchor_hours is None else anchor_hours * 3600,
                jobs=jobs,
                perturbation=perturbation,
            )
        except (FileNotFoundError, LabelsError, RecordingError, AnchorUnavailable) as exc:
            fail(str(exc))
        except DetectorError as exc:
            fail(f"detector refused a night: {exc}")
        report = eval_report(results, chosen, perturbation)
        print_report(report)
        if json_out is not None:
            payload = report_json(report)
            payload["nights"] = [
                {
                    "name": r.name,
                    "scenario": r.scenario,
                    "seconds": r.seconds,
                    "scores": {
                        who: {
                            "matched": len(s.matches),
                            "missed": [asdict(m) for m in s.missed],
                            "false_alarms": [asdict(a) for a in s.false_alarms],
                        }
                        for who, s in r.scores.items()
                    },
                }
                for r in results
            ]
            json_out.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
