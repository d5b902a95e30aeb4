"""``crampwatch config``: show the effective settings or the table of all settings."""

from __future__ import annotations

import json

import typer

from crampwatch.commands._common import ConfigOption, settings_or_exit
from crampwatch.settings import settings_table


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_command(
        config: ConfigOption = None,
        table: bool = typer.Option(
            False, "--table", help="Print every setting as a Markdown table."
        ),
    ) -> None:
        """Print the effective configuration (secrets masked) or the settings table."""
        if table:
            typer.echo("| Environment variable | Default | Meaning |\n|---|---|---|")
            for env, default, description in settings_table():
                typer.echo(f"| `{env}` | `{default}` | {description} |")
            return
        settings = settings_or_exit(config)
        typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))
