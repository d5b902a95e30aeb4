"""Errors of the metadata repository."""

from __future__ import annotations


class MetadataError(Exception):
    """Base class of metadata errors."""


class NotFound(MetadataError, LookupError):
    """The referenced wearer, clinician, device, grant, key or webhook does not exist."""


class Conflict(MetadataError, ValueError):
    """The record would duplicate an existing one (same id, an active grant already there)."""
