"""``crampwatch serve``: the whole service, optionally fed by simulated wearables."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import numpy as np
import typer

from crampwatch.commands._common import (
    ConfigOption,
    configure_logging,
    fail,
    settings_or_exit,
)
from crampwatch.service import Service, ServiceError
from storage.metadata.db import MetadataDB
from storage.metadata.records import Role

DEMO_WEARER = "demo-wearer"
DEMO_CLINICIAN = "demo-clinician"
DEMO_KEY_NAME = "demo"
DEMO_SCENARIOS = ("frequent-cramps", "typical", "plms", "restless", "faulty-sensor", "quiet")


@dataclass(frozen=True)
class DemoKeys:
    """API keys issued for a simulated run (shown once on the console)."""

    wearer: str
    clinician: str
    admin: str


def demo_device_id(index: int) -> str:
    """Device id of simulated wearable ``index``."""
    return f"sim-{index:04d}"


def prepare_demo(metadata: MetadataDB, devices: int) -> DemoKeys:
    """Register a demo wearer owning the simulated devices, a clinician with access, and keys."""
    if metadata.wearer(DEMO_WEARER) is None:
        metadata.add_wearer("Demo wearer", wearer_id=DEMO_WEARER)
    if metadata.clinician(DEMO_CLINICIAN) is None:
        metadata.add_clinician("Demo clinician", clinician_id=DEMO_CLINICIAN)
    if not metadata.has_access(DEMO_CLINICIAN, DEMO_WEARER):
        metadata.grant(DEMO_CLINICIAN, DEMO_WEARER, granted_by=Role.ADMIN)
    for index in range(devices):
        if metadata.device(demo_device_id(index)) is None:
            metadata.add_device(demo_device_id(index), DEMO_WEARER, site="left_calf")
    for key in metadata.api_keys():  # keys of an earlier demo run stop working
        if key.name == DEMO_KEY_NAME and key.revoked_at is None:
            metadata.revoke_key(key.key_id)
    return DemoKeys(
        wearer=metadata.create_key(Role.WEARER, wearer_id=DEMO_WEARER, name=DEMO_KEY_NAME).token,
        clinician=metadata.create_key(
            Role.CLINICIAN, clinician_id=DEMO_CLINICIAN, name=DEMO_KEY_NAME
        ).token,
        admin=metadata.create_key(Role.ADMIN, name=DEMO_KEY_NAME).token,
    )


class Simulation:
    """Simulated wearables publishing night after night, starting now, at ``speed`` x real time."""

    def __init__(
        self, broker_url: str, devices: int, speed: float, night_min: float, seed: int
    ) -> None:
        self.broker_url = broker_url
        self.devices = devices
        self.speed = speed
        self.night_s = night_min * 60.0
        self.seed = seed
        self.stop_event = threading.Event()
        self.frames_acked = 0
        self.nights_done = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="simulation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(15)

    def _run(self) -> None:
        from simulator.night import simulate_night
        from simulator.publisher import (
            DeviceNight,
            PublishError,
            PublishOptions,
            PublishProgress,
            publish_nights,
        )

        options = PublishOptions(speed=self.speed, client_id_prefix="crampwatch-demo")
        start_us = int(datetime.now(UTC).timestamp() * 1e6)
        night = 0
        base = 0
        while not self.stop_event.is_set():
            nights = []
            for index in range(self.devices):
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, night]))
                scenario = DEMO_SCENARIOS[(index + night) % len(DEMO_SCENARIOS)]
                sim = simulate_night(
                    rng,
                    scenario,
                    duration_s=self.night_s,
                    start_us=start_us,
                    device_id=demo_device_id(index),
                    seed=self.seed,
                    dtype=np.float32,
                )
                nights.append(DeviceNight(sim.recording, sim.labels))

            def progress(p: PublishProgress, base: int = base) -> None:
                self.frames_acked = base + p.frames_acked

            try:
                report = publish_nights(
                    nights, self.broker_url, options, stop=self.stop_event, progress=progress
                )
            except PublishError as exc:
                self.error = str(exc)
                return
            base += report.frames_acked
            self.nights_done += 1
            night += 1
            start_us += int((self.night_s + 600) * 1e6)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        config: ConfigOption = None,
        simulate: Annotated[
            int, typer.Option("--simulate", min=0, max=500, help="Feed N simulated wearables.")
        ] = 0,
        speed: Annotated[
            float, typer.Option(min=1.0, max=10_000.0, help="Simulation speed, x real time.")
        ] = 60.0,
        night_min: Annotated[
            float,
            typer.Option(
                "--night-min", min=1.0, max=720.0, help="Simulated night length, minutes."
            ),
        ] = 120.0,
        seed: Annotated[int, typer.Option(help="Simulation seed.")] = 1,
        ingest: Annotated[
            bool, typer.Option("--ingest/--no-ingest", help="Run the ingest worker and alerts.")
        ] = True,
        api: Annotated[bool, typer.Option("--api/--no-api", help="Run the HTTP API.")] = True,
    ) -> None:
        """Run the service: ingest worker + detector + store + alerts + API (Ctrl-C stops)."""
        settings = settings_or_exit(config)
        configure_logging(settings)
        if simulate and not ingest:
            fail("--simulate needs the ingest worker (drop --no-ingest)")
        service = Service(settings, run_ingest=ingest, run_api=api)
        try:
            service.start()
        except (ServiceError, OSError, RuntimeError) as exc:
            fail(str(exc), code=1)
        simulation: Simulation | None = None
        try:
            assert service.endpoint is not None and service.metadata is not None
            typer.echo(f"CrampWatch is running (data in {settings.data_dir.resolve()})")
            typer.echo(
                f"  MQTT broker : {service.endpoint.host}:{service.endpoint.port}"
                + (" (embedded)" if service.broker else "")
            )
            typer.echo(f"  store       : {settings.store.backend}")
            if api:
                typer.echo(
                    f"  API         : {service.api_url}/v1   docs: {service.api_url}/docs   health: {service.api_url}/readyz"
                )
            if simulate:
                keys = prepare_demo(service.metadata, simulate)
                simulation = Simulation(service.broker_url, simulate, speed, night_min, seed)
                simulation.start()
                typer.echo(
                    f"  simulating  : {simulate} wearables at {speed:g}x real time, nights of {night_min:g} min"
                )
                typer.echo(f"  wearer key  : {keys.wearer}")
                typer.echo(f"  clinician   : {keys.clinician}")
                typer.echo(f"  admin key   : {keys.admin}")
                typer.echo(
                    f"  try         : curl -H 'Authorization: Bearer {keys.wearer}' "
                    f"{service.api_url}/v1/me/nights"
                )
            typer.echo("Press Ctrl-C to stop.")
            _progress_loop(service, simulation)
        except KeyboardInterrupt:
            typer.echo("\nstopping...")
        finally:
            if simulation is not None:
                simulation.stop()
            service.stop()
        typer.echo("stopped.")


def _progress_loop(
    service: Service, simulation: Simulation | None, interval_s: float = 2.0
) -> None:
    while True:
        time.sleep(interval_s)
        parts = []
        if service.worker is not None:
            if service.worker.failure is not None:
                raise typer.Exit(1)
            stats = service.worker.stats()
            parts.append(f"frames in {stats.frames_accepted}")
            parts.append(f"dead letters {stats.dead_letters}")
        progress = service.progress
        parts.append(
            f"episodes found {progress.episodes_started} (ended {progress.episodes_ended})"
        )
        if simulation is not None:
            parts.append(
                f"simulated frames acked {simulation.frames_acked}, nights {simulation.nights_done}"
            )
            if simulation.error:
                parts.append(f"simulation stopped: {simulation.error}")
        typer.echo("  " + " | ".join(parts))
