"""``crampwatch simulate`` (fleet over MQTT, or a labelled suite on disk) and ``crampwatch replay``."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from crampwatch.commands._common import ConfigOption, fail, settings_or_exit
from crampwatch.settings import Settings
from simulator.fleet import FleetProgress, run_fleet, write_suite
from simulator.labels import LabelsError, NightLabels, load_labels
from simulator.publisher import (
    DeviceNight,
    PublishError,
    PublishOptions,
    PublishProgress,
    PublishReport,
    publish_nights,
)
from simulator.recording import Recording, RecordingError, read_recording
from simulator.scenarios import SCENARIOS, ScenarioError, get_scenario


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        fail(f"--speed must be a positive number or 'max', got {text!r}")
    if not value > 0:
        fail(f"--speed must be positive, got {text!r}")
    return value


def _broker(url: str | None, settings: Settings) -> str:
    """The broker URL: ``--broker``, else the configured one, else the embedded broker; the
    configured user name and password are added when the URL has none."""
    if url and not url.startswith(("mqtt://", "mqtts://")):
        fail(f"--broker must look like mqtt://host:port, got {url!r}")
    chosen = url or settings.broker.url or f"mqtt://127.0.0.1:{settings.broker.embedded_port}"
    scheme, rest = chosen.split("://", 1)
    if settings.broker.username and "@" not in rest:
        secret = settings.broker.password.get_secret_value() if settings.broker.password else ""
        user = quote(settings.broker.username, safe="")
        rest = f"{user}:{quote(secret, safe='')}@{rest}" if secret else f"{user}@{rest}"
    return f"{scheme}://{rest}"


def _report_line(report: PublishReport) -> str:
    return (
        f"{report.devices} device(s): {report.frames_sent}/{report.frames_total} frames sent, "
        f"{report.frames_acked} acked, {report.bytes_sent / 1e6:.1f} MB in "
        f"{report.elapsed_s:.1f} s ({report.frames_per_s:.0f} frames/s), "
        f"{report.reconnects} reconnect(s)" + (" [stopped]" if report.stopped else "")
    )


class _Bar:
    """A console progress bar fed by publisher progress callbacks."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.done = 0

    def update(self, p: PublishProgress) -> None:
        if self.bar is None:
            self.bar = typer.progressbar(length=max(1, p.frames_total), label=self.label)
            self.bar.__enter__()
        self.bar.update(p.frames_acked - self.done)
        self.done = p.frames_acked

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
            self.done = 0


_FRAME_S_OPTION: Any = typer.Option(
    None,
    "--frame-s",
    min=0.05,
    max=60.0,
    help="Frame length, s (default 1 live; for --sync the longest up to 30 s).",
)


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_command(
        devices: int = typer.Option(1, "--devices", min=1, help="Simulated wearers."),
        nights: int = typer.Option(1, "--nights", min=1, help="Nights per wearer (or suite)."),
        speed: str = typer.Option("1", "--speed", help="x real time, or 'max'."),
        broker: str | None = typer.Option(
            None, "--broker", help="mqtt://host:port (default: the configured broker)."
        ),
        sync: bool = typer.Option(False, "--sync", help="End-of-night bulk sync topics."),
        json_frames: bool = typer.Option(False, "--json", help="JSON frames, not binary."),
        frame_s: float | None = _FRAME_S_OPTION,
        scenario: str | None = typer.Option(
            None, "--scenario", help=f"Fix the scenario: {', '.join(SCENARIOS)}."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same nights."),
        out: Path | None = typer.Option(
            None, "--out", help="Directory for the labels (default: <data_dir>/simulated)."
        ),
        duration_min: float = typer.Option(480.0, "--duration-min", min=0.2, help="Night length."),
        emg_rate_hz: float | None = typer.Option(
            None, "--emg-rate", help="EMG rate, Hz (default 1000; varied in a suite)."
        ),
        acc_rate_hz: float | None = typer.Option(
            None, "--acc-rate", help="Accelerometer rate, Hz (default 50; varied in a suite)."
        ),
        no_frame_faults: bool = typer.Option(
            False, "--no-frame-faults", help="Send frames cleanly even where labels list faults."
        ),
        suite: Path | None = typer.Option(
            None, "--suite", help="Write a labelled EDF+ evaluation suite here instead."
        ),
        config: ConfigOption = None,
    ) -> None:
        """Simulate wearers' nights and publish them over MQTT, or write a labelled suite."""
        if scenario is not None:
            try:
                get_scenario(scenario)
            except ScenarioError as exc:
                fail(str(exc))
        if suite is not None:
            _write_suite(suite, nights, seed, duration_min, emg_rate_hz, acc_rate_hz)
            return
        settings = settings_or_exit(config)
        out = out or settings.data_dir / "simulated"
        options = PublishOptions(
            speed=_speed(speed),
            sync=sync,
            json=json_frames,
            frame_s=frame_s,
            frame_faults=not no_frame_faults,
        )
        bar = _Bar("publishing")
        current = [-1]

        def on_progress(p: FleetProgress) -> None:
            if p.night != current[0]:
                bar.close()
                bar.label = f"night {p.night + 1}/{p.nights}"
                current[0] = p.night
            bar.update(p.publish)

        stop = threading.Event()
        try:
            reports = run_fleet(
                _broker(broker, settings),
                devices=devices,
                nights=nights,
                options=options,
                seed=seed,
                scenario=scenario,
                duration_s=duration_min * 60.0,
                emg_rate_hz=emg_rate_hz or 1000.0,
                acc_rate_hz=acc_rate_hz or 50.0,
                out_dir=out,
                stop=stop,
                progress=on_progress,
            )
        except KeyboardInterrupt:
            stop.set()
            fail("interrupted", 130)
        except (PublishError, ValueError) as exc:
            fail(str(exc))
        finally:
            bar.close()
        for k, report in enumerate(reports):
            typer.echo(f"night {k + 1}: {_report_line(report)}")
        typer.echo(f"labels in {out}")

    @app.command("replay")
    def replay_command(
        path: Path = typer.Argument(..., help="EDF/EDF+ or CSV recording."),
        device: str = typer.Option("replay-0001", "--device", help="Device id to publish as."),
        speed: str = typer.Option("1", "--speed", help="x real time, or 'max'."),
        broker: str | None = typer.Option(
            None, "--broker", help="mqtt://host:port (default: the configured broker)."
        ),
        sync: bool = typer.Option(False, "--sync", help="End-of-night bulk sync topics."),
        json_frames: bool = typer.Option(False, "--json", help="JSON frames, not binary."),
        frame_s: float | None = _FRAME_S_OPTION,
        labels_path: Path | None = typer.Option(
            None, "--labels", help="Labels JSON whose frame faults to apply (default: none)."
        ),
        emg_rate_hz: float | None = typer.Option(None, "--emg-rate", help="EMG rate (CSV)."),
        acc_rate_hz: float | None = typer.Option(None, "--acc-rate", help="ACC rate (CSV)."),
        config: ConfigOption = None,
    ) -> None:
        """Publish a recorded night (EDF+/CSV, ours or anyone's) over MQTT."""
        settings = settings_or_exit(config)
        try:
            rec = read_recording(path, emg_rate_hz=emg_rate_hz, acc_rate_hz=acc_rate_hz)
        except RecordingError as exc:
            fail(str(exc))
        labels = replay_labels(rec, device)
        if labels_path is not None:
            try:
                loaded = load_labels(labels_path)
            except LabelsError as exc:
                fail(str(exc))
            labels = dataclasses.replace(labels, faults=loaded.faults)
        bar = _Bar(f"replaying {path.name}")
        try:
            report = publish_nights(
                [DeviceNight(rec, labels)],
                _broker(broker, settings),
                PublishOptions(speed=_speed(speed), sync=sync, json=json_frames, frame_s=frame_s),
                progress=bar.update,
            )
        except (PublishError, ValueError) as exc:
            fail(str(exc))
        finally:
            bar.close()
        typer.echo(_report_line(report))


def replay_labels(rec: Recording, device_id: str) -> NightLabels:
    """Minimal labels for publishing a recording as ``device_id`` (no events, no faults)."""
    return NightLabels(
        device_id=device_id,
        start_us=rec.start_us,
        scenario="recorded",
        seed=None,
        emg_rate_hz=rec.emg_rate_hz,
        acc_rate_hz=rec.acc_rate_hz,
        duration_s=rec.duration_s,
    )


def _write_suite(
    out_dir: Path,
    nights: int,
    seed: int,
    duration_min: float,
    emg_rate_hz: float | None,
    acc_rate_hz: float | None,
) -> None:
    with typer.progressbar(length=nights, label=f"writing suite to {out_dir}") as bar:
        try:
            entries = write_suite(
                out_dir,
                nights=nights,
                seed=seed,
                duration_s=duration_min * 60.0,
                emg_rate_hz=emg_rate_hz,
                acc_rate_hz=acc_rate_hz,
                progress=lambda _done, _total: bar.update(1),
            )
        except (ValueError, OSError) as exc:
            fail(str(exc))
    composition: dict[str, int] = {}
    for entry in entries:
        composition[entry.scenario] = composition.get(entry.scenario, 0) + 1
    typer.echo(
        json.dumps(
            {"nights": len(entries), "cramps": sum(e.cramps for e in entries), **composition}
        )
    )
