"""Numbered SQL migrations, packaged as data: `schema/<dialect>/NNNN_name.sql`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from ..errors import IncompatibleStoreError

__all__ = ["Migration", "latest_version", "migrations", "pending"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# numbers held for a migration on a branch not merged yet: they may be missing here
# (a database migrated past such a number must be made again once it lands)
RESERVED = frozenset({8})


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
    expected = 1
    for mig in found:
        while expected in RESERVED and mig.version != expected:
            expected += 1
        if mig.version != expected:
            raise RuntimeError(
                f"{dialect} migrations are not numbered 1..n: missing {expected:04d}"
            )
        expected += 1
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
