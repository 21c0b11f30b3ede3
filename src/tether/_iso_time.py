"""Times as tether's JSON writes them (the run record, the outbox's events), both ways:
UTC as ``Z`` out, ISO 8601 back in. One place, so the export and its readers agree."""

from __future__ import annotations

from datetime import datetime
from typing import overload

__all__ = ["from_iso", "iso_z"]


@overload
def iso_z(dt: datetime) -> str: ...
@overload
def iso_z(dt: None) -> None: ...
@overload
def iso_z(dt: datetime | None) -> str | None: ...


def iso_z(dt: datetime | None) -> str | None:
    """A time as the JSON writes it (UTC as ``Z``); None stays None."""
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def from_iso(text: str | None) -> datetime | None:
    """A time `iso_z` wrote, read back; None stays None."""
    return None if text is None else datetime.fromisoformat(text)
