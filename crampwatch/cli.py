"""The ``crampwatch`` command line.

Each module in :mod:`crampwatch.commands` defines ``register(app)`` and adds its own commands,
so a stage's commands live next to the wiring they need and this file stays small.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import crampwatch.commands


def build_app() -> typer.Typer:
    """The Typer application with every command registered."""
    app = typer.Typer(
        name="crampwatch",
        help="CrampWatch: detect nocturnal leg cramps from wearable EMG + accelerometer streams.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """CrampWatch: detect nocturnal leg cramps from wearable EMG + accelerometer streams."""

    for module_info in sorted(
        pkgutil.iter_modules(crampwatch.commands.__path__), key=lambda m: m.name
    ):
        module = importlib.import_module(f"crampwatch.commands.{module_info.name}")
        module.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()()
