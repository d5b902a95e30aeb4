"""The metadata database as the alerts' directory: webhook subscriptions and device wearers."""

from __future__ import annotations

from alerts.webhooks import WebhookSubscription, subscriptions_for
from storage.metadata import MetadataDB


class MetadataDirectory:
    """:class:`alerts.webhooks.WebhookDirectory` (and ``wearer_of``) over a :class:`MetadataDB`.

    A webhook's recipient id is its owner's id (wearer or clinician), the key of that
    recipient's preferences.
    """

    def __init__(self, db: MetadataDB) -> None:
        self._db = db

    def webhooks_for_device(self, device_id: str) -> list[WebhookSubscription]:
        """The device owner's webhooks and those of clinicians with an active grant."""
        return subscriptions_for(self._db, device_id)

    def wearer_of(self, device_id: str) -> str | None:
        """The id of the wearer who owns ``device_id`` (None for an unknown device)."""
        device = self._db.device(device_id)
        return None if device is None else device.owner_id
