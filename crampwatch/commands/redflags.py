"""``crampwatch redflags evaluate|list``: the clinicians' red flags, from the command line.

Flags are kept in the metadata DB (``alert_*`` tables) by :class:`alerts.redflag_store.
RedFlagStore`, the same store the API and the running service use; a flag raised here is sent
once to the webhooks of the wearer and granted clinicians by the service's dispatcher.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crampwatch.commands._common import ConfigOption, fail, settings_or_exit

if TYPE_CHECKING:
    from alerts.redflag_store import RedFlagStore, StoredRedFlag
    from storage.base import Store
    from storage.metadata import MetadataDB, WearerRecord

redflags_app = typer.Typer(help="Red flags for clinicians: evaluate the rules, list flags.")

WearerOption = Annotated[
    str | None, typer.Option("--wearer", help="Only this wearer (default: every wearer).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclass(frozen=True)
class _Context:
    metadata: MetadataDB
    store: Store | None
    flags: RedFlagStore


@contextmanager
def _opened(config: Path | None, *, with_store: bool) -> Iterator[_Context]:
    from alerts.directory import MetadataDirectory
    from alerts.redflag_store import RedFlagStore
    from crampwatch.wiring import open_configured_store, open_metadata, red_flag_rules
    from storage.base import StoreUnavailable
    from storage.metadata import MetadataError

    settings = settings_or_exit(config)
    with ExitStack() as stack:
        try:
            metadata = open_metadata(settings)
            stack.callback(metadata.close)
            store = open_configured_store(settings) if with_store else None
            if store is not None:
                stack.callback(store.close)
            flags = RedFlagStore(
                metadata.engine, MetadataDirectory(metadata), rules=red_flag_rules(settings)
            )
        except (MetadataError, StoreUnavailable, ValueError) as exc:
            fail(str(exc))
        try:
            yield _Context(metadata, store, flags)
        except StoreUnavailable as exc:
            fail(f"results store unavailable: {exc}")


def _wearers(metadata: MetadataDB, wearer_id: str | None) -> list[WearerRecord]:
    if wearer_id is None:
        return list(metadata.wearers())
    wearer = metadata.wearer(wearer_id)
    if wearer is None:
        fail(f"wearer {wearer_id} does not exist")
    return [wearer]


def _parse_night(night: str | None) -> date | None:
    if night is None:
        return None
    try:
        return date.fromisoformat(night)
    except ValueError:
        fail(f"--night {night!r} is not a date (YYYY-MM-DD)")


def _flag_json(flag: StoredRedFlag) -> dict[str, Any]:
    doc = asdict(flag)
    doc["rule"] = str(flag.rule)
    doc["nights"] = list(flag.nights)
    return doc


def _print_table(flags: Sequence[StoredRedFlag]) -> None:
    rows = [("FLAG", "DEVICE", "RULE", "STATE", "RAISED", "LAST", "NIGHTS", "SUMMARY")]
    rows += [
        (
            f.flag_id[:8],
            f.device_id,
            str(f.rule),
            f.state,
            f.raised_night,
            f.last_night,
            ",".join(f.nights),
            f.summary,
        )
        for f in flags
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))


@redflags_app.command("evaluate")
def evaluate(
    wearer: WearerOption = None,
    night: Annotated[
        str | None,
        typer.Option(
            help="Night to evaluate, YYYY-MM-DD (its evening); default: each wearer's latest "
            "completed night (noon to noon in the wearer's time zone).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Run the red-flag rules on each device of a wearer (or all) and print newly raised flags."""
    from alerts.nightly import evaluate_nights, latest_completed_night, night_problem

    wanted = _parse_night(night)
    now = datetime.now(UTC)
    with _opened(config, with_store=True) as ctx:
        assert ctx.store is not None
        plan: list[tuple[WearerRecord, date]] = []
        for person in _wearers(ctx.metadata, wearer):
            latest = latest_completed_night(now, person.time_zone)
            problem = night_problem(wanted or latest, latest)
            if problem is not None:
                fail(f"{person.wearer_id}: {problem}")
            plan.append((person, wanted or latest))
        evaluated: list[dict[str, Any]] = []
        raised: list[StoredRedFlag] = []
        for person, evening in plan:
            device_ids = [d.device_id for d in ctx.metadata.devices_of(person.wearer_id)]
            raised.extend(
                evaluate_nights(ctx.flags, ctx.store, device_ids, evening, person.time_zone)
            )
            evaluated.append(
                {"wearer_id": person.wearer_id, "night": evening.isoformat(), "devices": device_ids}
            )
    if as_json:
        typer.echo(
            json.dumps(
                {"evaluated": evaluated, "raised": [_flag_json(f) for f in raised]}, indent=2
            )
        )
        return
    for item in evaluated:
        devices = ", ".join(item["devices"]) or "no devices"
        typer.echo(f"evaluated night {item['night']} of {item['wearer_id']} ({devices})")
    if not raised:
        typer.echo("no new red flags")
        return
    typer.echo(f"{len(raised)} new red flag{'s' if len(raised) != 1 else ''}:")
    _print_table(raised)


@redflags_app.command("list")
def list_flags(
    wearer: WearerOption = None,
    active: Annotated[bool, typer.Option("--active", help="Only flags still firing.")] = False,
    limit: Annotated[int, typer.Option(help="Most flags shown.", min=1, max=10_000)] = 500,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List stored red flags, newest first, with the nights that triggered them."""
    with _opened(config, with_store=False) as ctx:
        device_ids = None
        if wearer is not None:
            _wearers(ctx.metadata, wearer)
            device_ids = [d.device_id for d in ctx.metadata.devices_of(wearer)]
        flags = ctx.flags.flags(device_ids, active_only=active, limit=limit)
    if as_json:
        typer.echo(json.dumps([_flag_json(f) for f in flags], indent=2))
        return
    if not flags:
        typer.echo("no red flags")
        return
    _print_table(flags)


def register(app: typer.Typer) -> None:
    app.add_typer(redflags_app, name="redflags")
