"""Database URLs: which backend, where, and with which options."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from ..errors import InvalidArgumentError

__all__ = [
    "DEFAULT_URL",
    "Durability",
    "PgConfig",
    "SQLiteConfig",
    "check_url",
    "parse_pg_url",
    "parse_sqlite_url",
    "redact",
    "resolve_url",
]

DEFAULT_URL = "sqlite:///.tether/tether.db"
ENV_VAR = "TETHER_DATABASE_URL"
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


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
                f"durability must be 'full' or 'normal', got {value!r}; "
                "e.g. ?durability=normal or durability='normal'"
            ) from None


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else $TETHER_DATABASE_URL, else the default file.

    A URL that cannot be parsed (a bad port, an unclosed IPv6 bracket, an option
    that is not a number) is refused here, before any adapter sees it.
    """
    if url is not None and not isinstance(url, str):
        raise InvalidArgumentError(
            f"database URL must be a str, got {type(url).__name__} {url!r}; "
            "pass e.g. 'sqlite:///tether.db' or 'postgresql://user@host:5432/db'"
        )
    if url:
        check_url(url, "database URL")
        return url
    env = os.environ.get(ENV_VAR)
    if env:
        check_url(env, f"${ENV_VAR}")
        return env
    return DEFAULT_URL


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by ***, fit for an error message."""
    return re.sub(r"^([^:/?#]+://[^:/?#@]*):[^@/?#]*@", r"\1:***@", url)


def check_url(url: str, what: str = "database URL") -> SplitResult:
    """Refuse what no backend can parse, naming the part that is wrong; the split URL."""
    shown = repr(redact(url)) if len(url) <= 200 else repr(redact(url)[:200]) + "..."
    if "\x00" in url or any("\ud800" <= c <= "\udfff" for c in url):
        raise InvalidArgumentError(
            f"{what} {shown} contains a NUL character or a lone surrogate; "
            "pass a plain text URL such as sqlite:///tether.db"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        hint = (
            " (an IPv6 host goes in brackets, e.g. postgresql://user@[::1]:5432/db)"
            if "IPv6" in str(exc)
            else ""
        )
        raise InvalidArgumentError(f"{what} {shown} cannot be parsed: {exc}{hint}") from None
    try:
        parts.port  # noqa: B018 -- parsing it is the check
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{what} {shown} has a bad port: {exc}; give a port from 1 to 65535, "
            "e.g. postgresql://user@localhost:5432/db"
        ) from None
    if parts.scheme in ("postgresql", "postgres"):
        opts = dict(parse_qsl(parts.query))
        if "pool_size" in opts:
            text = opts["pool_size"]
            if not text.strip().isdigit() or int(text) < 1:
                raise InvalidArgumentError(
                    f"{what}: pool_size must be an integer >= 1, got {text!r}; e.g. ?pool_size=10"
                )
        if "statement_timeout" in opts:
            _option_seconds(what, "statement_timeout", opts["statement_timeout"], "30")
    return parts


def _option_seconds(what: str, name: str, text: str, example: str) -> float:
    """A URL option that is a number of seconds: finite, >= 0, and at most ~24 days."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 2_147_483):  # PostgreSQL's cap, in seconds
        raise InvalidArgumentError(
            f"{what}: {name} must be a number of seconds from 0 to 2147483, got {text!r}; "
            f"e.g. ?{name}={example}"
        )
    return value


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
    if "\x00" in path or any("\ud800" <= c <= "\udfff" for c in path):
        raise InvalidArgumentError(
            f"bad sqlite URL {url!r}: the path contains a NUL character or a lone surrogate; "
            "give a plain file path, e.g. sqlite:///data/tether.db"
        )
    dur = Durability.parse(durability or opts.get("durability", "full"))
    busy = _option_seconds("sqlite URL", "busy_timeout", opts.get("busy_timeout", "30"), "30")
    return SQLiteConfig(path=path, durability=dur, busy_timeout=busy)


@dataclass(frozen=True)
class PgConfig:
    conninfo: str
    host: str
    dbname: str
    schema: str
    pool_size: int
    statement_timeout: float | None
    durability: Durability

    @property
    def channel(self) -> str:
        return f"tether_{self.schema}"


def parse_pg_url(url: str, durability: str | Durability | None = None) -> PgConfig:
    """``postgresql://user@host:port/db?schema=tether&pool_size=10&statement_timeout=30``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidArgumentError(f"not a PostgreSQL URL: {url!r}")
    opts = dict(parse_qsl(parts.query))
    ours = {"schema", "pool_size", "statement_timeout", "durability"}
    schema = opts.pop("schema", "tether")
    if not _SCHEMA.match(schema):
        raise InvalidArgumentError(
            f"schema {schema!r} is not a plain identifier (letters, digits, underscore)"
        )
    try:
        pool_size = int(opts.pop("pool_size", "10"))
        timeout_text = opts.pop("statement_timeout", None)
        statement_timeout = None if timeout_text is None else float(timeout_text)
    except ValueError:
        raise InvalidArgumentError(
            "pool_size must be an integer and statement_timeout a number of seconds"
        ) from None
    if pool_size < 1:
        raise InvalidArgumentError(f"pool_size must be >= 1, got {pool_size}")
    dur = Durability.parse(durability or opts.pop("durability", "full"))
    opts.pop("durability", None)
    unknown = set(opts) - {"sslmode", "connect_timeout", "application_name", "sslrootcert"}
    if unknown:
        raise InvalidArgumentError(
            f"unknown PostgreSQL URL option(s) {sorted(unknown)}; known: {sorted(ours)} "
            "and sslmode, connect_timeout, application_name"
        )
    query = "&".join(f"{k}={v}" for k, v in opts.items())
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))
    host = parts.hostname or "localhost"
    if parts.port:
        host = f"{host}:{parts.port}"
    return PgConfig(
        conninfo=conninfo,
        host=host,
        dbname=parts.path.lstrip("/") or "(default)",
        schema=schema,
        pool_size=pool_size,
        statement_timeout=statement_timeout,
        durability=dur,
    )
