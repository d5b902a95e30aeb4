"""Helpers shared by the CLI commands: settings loading and one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from crampwatch.settings import Settings, SettingsError, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file with tables general, broker, ingest, detector, store, api, alerts.",
        show_default=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> Settings:
    """Load settings; a bad value ends the command with one clear line."""
    try:
        return load_settings(config)
    except SettingsError as exc:
        fail(str(exc))


def configure_logging(settings: Settings) -> None:
    """Console logging at the configured level, for the long-running commands."""
    logging.basicConfig(
        level=settings.general.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def register(app: typer.Typer) -> None:
    """Shared helpers register no command."""
