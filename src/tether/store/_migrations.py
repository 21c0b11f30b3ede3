"""Numbered SQL migrations, packaged as data: `schema/<dialect>/NNNN_name.sql`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from ..errors import IncompatibleStoreError, StoreUnavailableError

__all__ = ["Migration", "failed", "latest_version", "migrations", "pending"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Every migration of `dialect`, in version order."""
    folder = resources.files("tether.store").joinpath("schema", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise RuntimeError(
                f"{dialect} migrations are not numbered 1..n: missing {expected:04d}"
            )
    return tuple(found)


def latest_version(dialect: str) -> int:
    found = migrations(dialect)
    return found[-1].version if found else 0


def pending(dialect: str, current: int, where: str) -> list[Migration]:
    """The migrations after version `current` of the database `where` describes.

    `IncompatibleStoreError` if a newer tether wrote it."""
    known = latest_version(dialect)
    if current > known:
        raise IncompatibleStoreError(
            f"{where} was written by a newer tether (schema version {current}; this tether "
            f"knows up to {known}); upgrade tether to use it"
        )
    return [m for m in migrations(dialect) if m.version > current]


def failed(mig: Migration, current: int, where: str, exc: Exception) -> StoreUnavailableError:
    """A migration the database refused (an object of its name made by hand, say): the
    transaction of the pending ones rolled back. Said as it is: the driver's bare text
    ("relation ... already exists") came with advice to check that the server runs, and
    a worker took it for a blip to retry for ever (`lasting`)."""
    return StoreUnavailableError(
        f"{where}: migration {mig.version:04d}_{mig.name} failed ({exc}); none of the "
        f"pending migrations was applied, so the schema stays at version {current}. Fix "
        "what it ran into (e.g. drop an object of the same name made by hand) and open "
        "the database again: the upgrade goes on from there",
        lasting=True,
    )
