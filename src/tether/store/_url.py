"""Database URLs: which backend, where, and with which options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from ..errors import InvalidArgumentError

__all__ = ["DEFAULT_URL", "Durability", "SQLiteConfig", "parse_sqlite_url", "resolve_url"]

DEFAULT_URL = "sqlite:///.tether/tether.db"
ENV_VAR = "TETHER_DATABASE_URL"


class Durability(StrEnum):
    """How hard a completed step is pushed to disk before `step()` returns.

    `full` (default) waits for fsync: a completed step survives a power cut.
    `normal` skips it: a completed step survives a process crash but the last
    few may be lost on a power cut or OS crash, in exchange for much cheaper
    steps.
    """

    FULL = "full"
    NORMAL = "normal"

    @classmethod
    def parse(cls, value: str | Durability) -> Durability:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidArgumentError(
                f"durability must be 'full' or 'normal', got {value!r}"
            ) from None


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else $TETHER_DATABASE_URL, else the default file."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


@dataclass(frozen=True)
class SQLiteConfig:
    path: str  # ":memory:" for an in-memory database
    durability: Durability
    busy_timeout: float

    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:"


def parse_sqlite_url(url: str, durability: str | Durability | None = None) -> SQLiteConfig:
    """Parse ``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``sqlite:///:memory:``.

    Options: ``?durability=full|normal`` and ``?busy_timeout=SECONDS``. An
    explicit `durability` argument wins over the URL's.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise InvalidArgumentError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise InvalidArgumentError(
            f"bad sqlite URL {url!r}: use three slashes, e.g. sqlite:///path/to/file.db "
            "(four for an absolute path) or sqlite:///:memory:"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        path = ":memory:"
    opts = dict(parse_qsl(parts.query))
    unknown = set(opts) - {"durability", "busy_timeout"}
    if unknown:
        raise InvalidArgumentError(
            f"unknown sqlite URL option(s) {sorted(unknown)}; known: durability, busy_timeout"
        )
    dur = Durability.parse(durability or opts.get("durability", "full"))
    try:
        busy = float(opts.get("busy_timeout", "30"))
    except ValueError:
        raise InvalidArgumentError(
            f"busy_timeout must be a number of seconds, got {opts['busy_timeout']!r}"
        ) from None
    return SQLiteConfig(path=path, durability=dur, busy_timeout=busy)
