"""A fleet of simulated wearers over several nights, and the labelled evaluation suite.

Every night is reproducible on its own: its generator is seeded from ``(seed, device, night)``
through :class:`numpy.random.SeedSequence`, so night 5 of device 3 is the same whether or not
the others are generated.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from simulator.labels import write_labels
from simulator.night import DEFAULT_DURATION_S, DEFAULT_START, SimulatedNight, simulate_night
from simulator.profiles import WearerProfile, draw_profile, night_scenario
from simulator.publisher import (
    DeviceNight,
    PublishOptions,
    PublishProgress,
    PublishReport,
    publish_nights,
)
from simulator.recording import write_edf
from simulator.scenarios import SCENARIOS, get_scenario

SUITE_EMG_RATES_HZ: Final = (500.0, 1000.0, 1000.0, 2000.0)
SUITE_ACC_RATES_HZ: Final = (12.5, 25.0, 50.0, 50.0, 100.0)


def device_id_for(index: int) -> str:
    """Device id of fleet member ``index`` (``sim-0000``...)."""
    return f"sim-{index:04d}"


def profile_for(seed: int, device: int) -> WearerProfile:
    """The wearer profile of fleet member ``device``."""
    return draw_profile(np.random.default_rng(np.random.SeedSequence([seed, device])))


def fleet_night(
    seed: int,
    device: int,
    night: int,
    *,
    scenario: str | None = None,
    duration_s: float = DEFAULT_DURATION_S,
    emg_rate_hz: float = 1000.0,
    acc_rate_hz: float | None = 50.0,
    dtype: type[np.floating] = np.float32,
) -> SimulatedNight:
    """Night ``night`` of fleet member ``device``.

    The scenario comes from the wearer's profile unless ``scenario`` fixes it. Nights start on
    consecutive evenings from 2026-01-05, bedtime varying by up to ±90 min.
    """
    profile = profile_for(seed, device)
    rng = np.random.default_rng(np.random.SeedSequence([seed, device, night, 1]))
    chosen = scenario or night_scenario(rng, profile)
    get_scenario(chosen)
    bedtime = DEFAULT_START + timedelta(days=night, seconds=float(rng.uniform(-5400, 5400)))
    start_us = (bedtime - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return simulate_night(
        rng,
        chosen,
        duration_s=duration_s,
        emg_rate_hz=emg_rate_hz,
        acc_rate_hz=acc_rate_hz,
        start_us=int(start_us),
        device_id=device_id_for(device),
        seed=seed,
        profile=profile.describe(),
        dtype=dtype,
    )


@dataclass(frozen=True)
class FleetProgress:
    """Progress of :func:`run_fleet`: which night is being published and its counters."""

    night: int
    nights: int
    publish: PublishProgress


def run_fleet(
    broker_url: str,
    *,
    devices: int,
    nights: int,
    options: PublishOptions | None = None,
    seed: int = 0,
    scenario: str | None = None,
    duration_s: float = DEFAULT_DURATION_S,
    emg_rate_hz: float = 1000.0,
    acc_rate_hz: float | None = 50.0,
    out_dir: Path | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[FleetProgress], None] | None = None,
) -> list[PublishReport]:
    """Simulate ``devices`` wearers for ``nights`` nights and publish each night for all of them.

    Labels go to ``out_dir/<device>-night<k>.labels.json`` when ``out_dir`` is given. Meant to
    run in a background thread too (``crampwatch serve --simulate N``): set ``stop`` to end it.
    """
    stop = stop or threading.Event()
    reports = []
    for night in range(nights):
        if stop.is_set():
            break
        batch = [
            fleet_night(
                seed,
                device,
                night,
                scenario=scenario,
                duration_s=duration_s,
                emg_rate_hz=emg_rate_hz,
                acc_rate_hz=acc_rate_hz,
            )
            for device in range(devices)
        ]
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for sim in batch:
                write_labels(
                    out_dir / f"{sim.labels.device_id}-night{night}.labels.json", sim.labels
                )

        def forward(p: PublishProgress, night: int = night) -> None:
            if progress is not None:
                progress(FleetProgress(night, nights, p))

        reports.append(
            publish_nights(
                [DeviceNight(s.recording, s.labels) for s in batch],
                broker_url,
                options,
                stop=stop,
                progress=forward,
            )
        )
    return reports


@dataclass(frozen=True)
class SuiteEntry:
    """One night of the evaluation suite (file names relative to the suite directory)."""

    name: str
    scenario: str
    seed: int
    device_id: str
    edf: str
    labels: str
    duration_s: float
    emg_rate_hz: float
    acc_rate_hz: float | None
    cramps: int


def suite_nights(nights: int) -> Iterator[tuple[int, str]]:
    """(index, scenario) of each suite night: the scenarios in turn, so all are covered."""
    names = list(SCENARIOS)
    for index in range(nights):
        yield index, names[index % len(names)]


def write_suite(
    out_dir: Path,
    *,
    nights: int = 60,
    seed: int = 0,
    duration_s: float = DEFAULT_DURATION_S,
    emg_rate_hz: float | None = None,
    acc_rate_hz: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SuiteEntry]:
    """Write a reproducible labelled evaluation set: ``<name>.edf`` + ``<name>.labels.json`` per
    night and ``index.json``.

    Scenarios rotate so every one is covered; rates vary across nights (EMG 500-2000 Hz, ACC
    12.5-100 Hz) unless fixed by ``emg_rate_hz`` / ``acc_rate_hz``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, scenario in suite_nights(nights):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_000 + index]))
        emg_rate = emg_rate_hz or float(rng.choice(SUITE_EMG_RATES_HZ))
        acc_rate = acc_rate_hz or float(rng.choice(SUITE_ACC_RATES_HZ))
        name = f"night-{index:03d}-{scenario}"
        sim = fleet_night(
            seed,
            index,
            0,
            scenario=scenario,
            duration_s=duration_s,
            emg_rate_hz=emg_rate,
            acc_rate_hz=acc_rate,
        )
        write_edf(out_dir / f"{name}.edf", sim.recording)
        write_labels(out_dir / f"{name}.labels.json", sim.labels)
        entries.append(
            SuiteEntry(
                name=name,
                scenario=scenario,
                seed=seed,
                device_id=sim.labels.device_id,
                edf=f"{name}.edf",
                labels=f"{name}.labels.json",
                duration_s=sim.labels.duration_s,
                emg_rate_hz=emg_rate,
                acc_rate_hz=acc_rate,
                cramps=len(sim.labels.cramps),
            )
        )
        if progress is not None:
            progress(index + 1, nights)
    composition = Counter(e.scenario for e in entries)
    index_doc = {
        "seed": seed,
        "nights": nights,
        "duration_s": duration_s,
        "composition": dict(composition),
        "cramps": sum(e.cramps for e in entries),
        "entries": [e.__dict__ for e in entries],
    }
    (out_dir / "index.json").write_text(json.dumps(index_doc, indent=1) + "\n", encoding="utf-8")
    return entries
