"""Relational metadata: wearers, devices, clinicians, grants, API keys and webhooks.

:class:`MetadataDB` is the one repository the API, ingest and alerts use; it returns frozen
records, never ORM objects. SQLite by default, PostgreSQL by URL.
"""

from storage.metadata.db import MetadataDB
from storage.metadata.errors import Conflict, MetadataError, NotFound
from storage.metadata.records import (
    ApiKeyRecord,
    ClinicianRecord,
    DeviceRecord,
    GrantRecord,
    IssuedKey,
    Principal,
    Role,
    WearerRecord,
    WebhookRecord,
)

__all__ = [
    "ApiKeyRecord",
    "ClinicianRecord",
    "Conflict",
    "DeviceRecord",
    "GrantRecord",
    "IssuedKey",
    "MetadataDB",
    "MetadataError",
    "NotFound",
    "Principal",
    "Role",
    "WearerRecord",
    "WebhookRecord",
]
