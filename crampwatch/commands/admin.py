"""Admin commands for the metadata DB: ``crampwatch users|grants|keys|devices …``.

Each command opens the metadata DB named by the settings (``CRAMPWATCH_API_DATABASE_URL`` or a
SQLite file in the data dir), the same one the API and ingest use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from crampwatch.commands._common import ConfigOption, fail, settings_or_exit
from storage.metadata import MetadataDB, MetadataError, Role

users_app = typer.Typer(help="Wearers and clinicians.", no_args_is_help=True)
grants_app = typer.Typer(help="Clinicians' access to wearers.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
devices_app = typer.Typer(help="Devices and their MQTT credentials.", no_args_is_help=True)


@contextmanager
def _metadata(config: Path | None) -> Iterator[MetadataDB]:
    from crampwatch.wiring import metadata_url

    settings = settings_or_exit(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        db = MetadataDB(metadata_url(settings))
    except MetadataError as exc:
        fail(str(exc))
    try:
        yield db
    except (MetadataError, ValueError) as exc:
        fail(str(exc))
    finally:
        db.close()


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Display name.")],
    role: Annotated[Role, typer.Option(help="wearer or clinician.")] = Role.WEARER,
    user_id: Annotated[str | None, typer.Option("--id", help="Id (default: generated).")] = None,
    time_zone: Annotated[str, typer.Option("--tz", help="Wearer's IANA time zone.")] = "UTC",
    config: ConfigOption = None,
) -> None:
    """Create a wearer or a clinician and print its id."""
    with _metadata(config) as db:
        if role is Role.WEARER:
            typer.echo(db.add_wearer(name, time_zone=time_zone, wearer_id=user_id).wearer_id)
        elif role is Role.CLINICIAN:
            typer.echo(db.add_clinician(name, clinician_id=user_id).clinician_id)
        else:
            fail("admins are keys, not users: use `crampwatch keys create --role admin`")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List wearers and clinicians."""
    with _metadata(config) as db:
        for w in db.wearers():
            typer.echo(f"wearer     {w.wearer_id}\t{w.name}\t{w.time_zone}")
        for c in db.clinicians():
            typer.echo(f"clinician  {c.clinician_id}\t{c.name}")


@grants_app.command("add")
def grants_add(
    clinician: Annotated[str, typer.Option(help="Clinician id.")],
    wearer: Annotated[str, typer.Option(help="Wearer id.")],
    config: ConfigOption = None,
) -> None:
    """Give a clinician access to a wearer (as an admin) and print the grant id."""
    with _metadata(config) as db:
        typer.echo(db.grant(clinician, wearer, granted_by=Role.ADMIN).grant_id)


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[str, typer.Argument(help="Grant id.")], config: ConfigOption = None
) -> None:
    """Revoke a grant; the clinician loses access with the next request."""
    with _metadata(config) as db:
        grant = db.revoke_grant(grant_id)
        typer.echo(f"revoked {grant.grant_id} at {grant.revoked_at}")


@grants_app.command("list")
def grants_list(
    wearer: Annotated[str | None, typer.Option(help="Only this wearer's grants.")] = None,
    config: ConfigOption = None,
) -> None:
    """List grants (active and revoked)."""
    with _metadata(config) as db:
        for g in db.grants(wearer_id=wearer):
            state = "active" if g.active else f"revoked {g.revoked_at}"
            typer.echo(f"{g.grant_id}\t{g.clinician_id} -> {g.wearer_id}\t{state}")


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="wearer, clinician or admin.")],
    wearer: Annotated[str | None, typer.Option(help="Wearer id (wearer keys).")] = None,
    clinician: Annotated[str | None, typer.Option(help="Clinician id (clinician keys).")] = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    expires_days: Annotated[
        float, typer.Option(help="Days until the key expires; 0: never.", min=0)
    ] = 90,
    config: ConfigOption = None,
) -> None:
    """Issue an API key and print its token (shown only this once)."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with _metadata(config) as db:
        issued = db.create_key(
            role, wearer_id=wearer, clinician_id=clinician, name=name, expires_at=expires_at
        )
        typer.echo(issued.token)
        typer.echo(f"key id {issued.record.key_id}; expires {expires_at or 'never'}", err=True)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id.")], config: ConfigOption = None
) -> None:
    """Revoke an API key; it fails from the next request on."""
    with _metadata(config) as db:
        typer.echo(f"revoked {db.revoke_key(key_id).key_id}")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List keys (ids and owners, never secrets)."""
    with _metadata(config) as db:
        for k in db.api_keys():
            owner = k.wearer_id or k.clinician_id or "-"
            state = "revoked" if k.revoked_at else f"expires {k.expires_at or 'never'}"
            typer.echo(f"{k.key_id}\t{k.role}\t{owner}\t{k.name}\t{state}")


@devices_app.command("add")
def devices_add(
    device_id: Annotated[str, typer.Argument(help="Device id (also its MQTT user name).")],
    owner: Annotated[str, typer.Option(help="Wearer id of the owner.")],
    site: Annotated[str, typer.Option(help="Sensor site, e.g. left_calf.")] = "calf",
    mvc_uv: Annotated[
        float | None, typer.Option(help="Calibrated MVC amplitude, µV.", min=0)
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="mosquitto password file (default: broker setting).")
    ] = None,
    acl_file: Annotated[
        Path | None, typer.Option(help="mosquitto ACL file (default: broker setting).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Register a device and issue its MQTT credentials (the password is printed once)."""
    from ingest.broker_auth import BrokerAuthError, add_device_credentials
    from ingest.protocol import DEVICE_ID_PATTERN

    if not DEVICE_ID_PATTERN.match(device_id):
        fail(f"device id {device_id!r}: letters, digits, '_', '.', '-'; up to 64 characters")
    settings = settings_or_exit(config)
    password_file = password_file or settings.broker.password_file
    acl_file = acl_file or settings.broker.acl_file
    if (password_file is None) != (acl_file is None):
        fail("give both the broker password file and the ACL file, or neither")
    with _metadata(config) as db:
        device = db.add_device(device_id, owner, site=site, mvc_uv=mvc_uv)
        typer.echo(f"device {device.device_id} owned by {device.owner_id} at {device.site}")
        if password_file is None or acl_file is None:
            typer.echo(
                "no MQTT credentials issued: set CRAMPWATCH_BROKER_PASSWORD_FILE and "
                "CRAMPWATCH_BROKER_ACL_FILE (or --password-file/--acl-file)",
                err=True,
            )
            return
        try:
            password = add_device_credentials(password_file, acl_file, device_id)
        except (BrokerAuthError, OSError) as exc:
            fail(f"device registered but MQTT credentials not issued: {exc}")
        typer.echo(f"mqtt username: {device_id}")
        typer.echo(f"mqtt password: {password}")


@devices_app.command("list")
def devices_list(config: ConfigOption = None) -> None:
    """List devices with owner, site and calibration."""
    with _metadata(config) as db:
        for d in db.devices():
            mvc = "-" if d.mvc_uv is None else f"{d.mvc_uv:g} µV"
            typer.echo(f"{d.device_id}\t{d.owner_id}\t{d.site}\t{mvc}\t{d.time_zone}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(grants_app, name="grants")
    app.add_typer(keys_app, name="keys")
    app.add_typer(devices_app, name="devices")
