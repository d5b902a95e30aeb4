"""Stored red flags for one wearer: which night to evaluate and the evaluation of its devices.

The rules and the flags' lifecycle are :mod:`alerts.redflags` and :mod:`alerts.redflag_store`;
the API, ``crampwatch redflags`` and the service's hourly check share what is here, so all
evaluate the same night.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from alerts.redflag_store import RedFlagStore, StoredRedFlag
from storage.base import Store
from storage.localtime import night_of, night_window_us, to_us, utc_offset_s

MAX_EVALUATION_AGE_DAYS = 400  # the store's longest query range


def latest_completed_night(now: datetime, time_zone: str) -> date:
    """The last night (ISO date of its evening) whose noon-to-noon window has ended at ``now``.

    Parameters
    ----------
    now : datetime
        Timezone-aware current time.
    time_zone : str
        The wearer's IANA zone.
    """
    return night_of(to_us(now), time_zone) - timedelta(days=1)


def night_problem(night: date, latest: date) -> str | None:
    """Why ``night`` cannot be evaluated (not completed yet, too old), or None."""
    if night > latest:
        return f"night {night} has not ended yet; the latest completed night is {latest}"
    if night < latest - timedelta(days=MAX_EVALUATION_AGE_DAYS):
        return f"night {night} is more than {MAX_EVALUATION_AGE_DAYS} nights old"
    return None


def evaluate_nights(
    flags: RedFlagStore,
    store: Store,
    device_ids: Sequence[str],
    night: date,
    time_zone: str,
) -> list[StoredRedFlag]:
    """Run the red-flag rules for ``night`` on each device; the flags newly raised.

    Parameters
    ----------
    flags : RedFlagStore
        Keeps, raises (and sends once) the flags.
    store : Store
        Results store holding the devices' episodes and data coverage.
    device_ids : sequence of str
        The wearer's devices.
    night : date
        Night evaluated (the evening it starts, wearer's local time).
    time_zone : str
        The wearer's IANA zone; its UTC offset at the start of ``night`` splits the nights.
    """
    start_us, _ = night_window_us(night, time_zone)
    offset_s = utc_offset_s(time_zone, start_us)
    raised: list[StoredRedFlag] = []
    for device_id in device_ids:
        try:
            new = flags.evaluate_from_store(store, device_id, night.isoformat(), offset_s)
        except IntegrityError:
            # A concurrent evaluation raised the same flag first; it reports it, and this
            # second pass finds the flag active and only merges its nights.
            new = flags.evaluate_from_store(store, device_id, night.isoformat(), offset_s)
        raised.extend(new)
    return raised
