"""Database URLs: which backend, where, and with which options."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from .._names import unstorable
from ..errors import InvalidArgumentError

__all__ = [
    "DEFAULT_URL",
    "POSTGRES_INSTALL",
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
# tether is not on the package index: its extra is installed from a checkout or a git URL
POSTGRES_INSTALL = (
    "in a checkout of tether run pip install -e '.[postgres]', or install from git with "
    "pip install 'tether[postgres] @ git+<repository URL>'"
)
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# the libpq options a URL may pass on to the server's driver
_LIBPQ = ("sslmode", "connect_timeout", "application_name", "sslrootcert", "host")
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
        _check_driver(check_url(url, "database URL").scheme)
        return url
    env = os.environ.get(ENV_VAR)
    if env:
        _check_driver(check_url(env, f"${ENV_VAR}").scheme)
        return env
    return DEFAULT_URL


def _check_driver(scheme: str) -> None:
    """A PostgreSQL URL needs the optional driver: say how to install it, before
    anything is opened."""
    if scheme not in ("postgresql", "postgres"):
        return
    missing = [m for m in ("psycopg", "psycopg_pool") if not _importable(m)]
    if missing:
        raise InvalidArgumentError(
            f"{scheme}:// URLs need the PostgreSQL driver ({', '.join(missing)} is not "
            f"installed): {POSTGRES_INSTALL}"
        )


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by ***, fit for an error message.
    The password runs to the last ``@`` of the host part: one with an ``@`` in it
    showed what followed that ``@``."""
    return re.sub(r"^([^:/?#]+://[^:/?#@]*):[^/?#]*@", r"\1:***@", url)


# "scheme://user:" then a password cut short by a "/", "?" or "#" and an "@" after it:
# what a password with one of those left as it is looks like (group 1: the "port")
_CUT_PASSWORD = re.compile(r"^[^:/?#]+://[^:/?#@]*:([^/?#@]*)[/?#].*@", re.DOTALL)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _check_userinfo(url: str, what: str) -> None:
    """Refuse a user name or password with a character a URL must percent-encode: read
    as the host, a port or the path, it was reported as "a bad port" or as the server's
    failure, and in those messages the password was shown in clear."""
    head = url.split("://", 1)[1] if "://" in url else ""
    netloc = re.split(r"[/?#]", head, maxsplit=1)[0]
    cut = _CUT_PASSWORD.match(url)
    if (
        netloc.count("@") > 1
        or (cut is not None and not cut.group(1).isdigit())
        or ("@" in netloc and _BAD_PERCENT.search(netloc.rpartition("@")[0]))
    ):
        raise InvalidArgumentError(
            f"{what}: the user name or password has a character that must be "
            "percent-encoded in a URL: write @ as %40, / as %2F, ? as %3F, # as %23, "
            "% as %25 and : as %3A, e.g. postgresql://user:a%40b@host/db for the password a@b"
        )


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: its import was blocked
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_url(url: str, what: str = "database URL") -> SplitResult:
    """Refuse what no backend can parse, naming the part that is wrong; the split URL."""
    _check_userinfo(url, what)  # first: its messages must not show the URL
    shown = repr(redact(url)) if len(url) <= 200 else repr(redact(url)[:200]) + "..."
    if unstorable(url):
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
    _check_blank(parts, what)
    if parts.scheme in ("postgresql", "postgres"):
        opts = dict(parse_qsl(parts.query))
        if "pool_size" in opts:
            text = opts["pool_size"]
            if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
                raise InvalidArgumentError(
                    f"{what}: pool_size must be an integer >= 1, got {text!r}; e.g. ?pool_size=10"
                )
        if "statement_timeout" in opts:
            _option_seconds(what, "statement_timeout", opts["statement_timeout"], "30")
        if "connect_timeout" in opts:
            text = opts["connect_timeout"]
            if not re.fullmatch(r"[0-9]+", text) or int(text) > 2_147_483:
                raise InvalidArgumentError(
                    f"{what}: connect_timeout must be a whole number of seconds from 0 to "
                    f"2147483, got {text!r}; e.g. ?connect_timeout=10"
                )
        if "sslmode" in opts and opts["sslmode"] not in _SSLMODES:
            raise InvalidArgumentError(
                f"{what}: sslmode must be one of {', '.join(_SSLMODES)}, got "
                f"{opts['sslmode']!r}; e.g. ?sslmode=require"
            )
    return parts


# tether's own URL options, by scheme, with an example of each
_OWN = {
    "postgresql": {"schema": "tether", "pool_size": "10", "statement_timeout": "30",
                   "durability": "full"},
    "sqlite": {"durability": "full", "busy_timeout": "5"},
}  # fmt: skip


def _check_blank(parts: SplitResult, what: str) -> None:
    """Refuse one of tether's own options given empty (``?schema=``): read as absent, it
    took the default, and a templated URL whose value came out empty put its tables in
    schema ``tether``, beside another deployment's."""
    own = _OWN.get("postgresql" if parts.scheme == "postgres" else parts.scheme, {})
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in own and not value.strip():
            raise InvalidArgumentError(
                f"{what}: ?{name}= is empty; give it a value, e.g. ?{name}={own[name]}, "
                "or leave the option out for its default"
            )


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

    A URL without a path (``sqlite://``, ``sqlite:///``) is refused rather than
    read as an in-memory database, and so is a file whose folder does not exist
    (except tether's default ``.tether/``, created on first use).

    Options: ``?durability=full|normal`` and ``?busy_timeout=SECONDS``. An
    explicit `durability` argument wins over the URL's.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise InvalidArgumentError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise InvalidArgumentError(
            f"bad sqlite URL {redact(url)!r}: use three slashes, e.g. sqlite:///path/to/file.db "
            "(four for an absolute path) or sqlite:///:memory:"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidArgumentError(
            f"sqlite URL {url!r} names no database file, so nothing would be durable; give a "
            "file, e.g. sqlite:///tether.db (four slashes for an absolute path), or ask for "
            "a throwaway in-memory database explicitly with sqlite:///:memory:"
        )
    opts = dict(parse_qsl(parts.query))
    unknown = set(opts) - {"durability", "busy_timeout"}
    if unknown:
        raise InvalidArgumentError(
            f"unknown sqlite URL option(s) {sorted(unknown)}; known: durability, busy_timeout"
        )
    if unstorable(path):
        raise InvalidArgumentError(
            f"bad sqlite URL {url!r}: the path contains a NUL character or a lone surrogate; "
            "give a plain file path, e.g. sqlite:///data/tether.db"
        )
    dur = Durability.parse(durability or opts.get("durability", "full"))
    busy = _option_seconds("sqlite URL", "busy_timeout", opts.get("busy_timeout", "30"), "30")
    if path != ":memory:":
        _check_parent(url, path)
    return SQLiteConfig(path=path, durability=dur, busy_timeout=busy)


def _check_parent(url: str, path: str) -> None:
    """Refuse a database file whose folder does not exist: a typo in a path must not
    create a tree of folders. tether's own default folder (./.tether/) is made on use."""
    parent = Path(path).parent
    if parent.is_dir():
        return
    default_folder = Path(DEFAULT_URL.removeprefix("sqlite:///")).parent
    if parent == default_folder or parent.absolute() == default_folder.absolute():
        return
    what = "is not a folder" if parent.exists() else "does not exist"
    if path.startswith("~"):  # "mkdir -p '~'" made a folder named ~ in the working directory
        home = Path(path).expanduser()
        raise InvalidArgumentError(
            f"sqlite URL {redact(url)!r}: a URL does not expand ~ (it named a folder "
            f"{str(parent)!r} that {what}); write the full path, e.g. sqlite:///{home}"
        )
    raise InvalidArgumentError(
        f"sqlite URL {redact(url)!r}: the folder {str(parent)!r} {what}; create it first "
        f"(mkdir -p {str(parent)!r}) or give a path in an existing folder"
    )


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

    @property
    def ident(self) -> str:
        """The schema as a quoted SQL identifier: unquoted, a name that is a keyword
        (``schema=user``, ``schema=order``) was a syntax error at start-up."""
        return f'"{self.schema}"'


def parse_pg_url(url: str, durability: str | Durability | None = None) -> PgConfig:
    """``postgresql://user@host:port/db?schema=tether&pool_size=10&statement_timeout=30``.

    The options are checked by `check_url` (the one place that says what is wrong).
    """
    parts = check_url(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidArgumentError(f"not a PostgreSQL URL: {url!r}")
    opts = dict(parse_qsl(parts.query))
    ours = {"schema", "pool_size", "statement_timeout", "durability"}
    schema = opts.pop("schema", "tether")
    if not _SCHEMA.match(schema):
        raise InvalidArgumentError(
            f"schema {schema!r} is not a plain identifier (letters, digits, underscore)"
        )
    # as PostgreSQL folds an unquoted name (the schema tether always used), and the
    # channel with it: LISTEN folds, pg_notify does not, so schema=Tether woke no one
    schema = schema.lower()
    pool_size = int(opts.pop("pool_size", "10"))
    timeout_text = opts.pop("statement_timeout", None)
    statement_timeout = None if timeout_text is None else float(timeout_text)
    dur = Durability.parse(durability or opts.pop("durability", "full"))
    opts.pop("durability", None)
    unknown = set(opts) - set(_LIBPQ)
    if unknown:
        raise InvalidArgumentError(
            f"unknown PostgreSQL URL option(s) {sorted(unknown)}; known: {sorted(ours)} "
            f"and {', '.join(_LIBPQ)}"
        )
    # encoded again: parse_qsl decoded it, and libpq refused application_name=my%20app
    # once it read "my app"
    query = urlencode(opts, quote_via=quote)
    # spelled out: urlunsplit drops the "//" of a URL without a host (the local
    # socket), and libpq cannot read "postgresql:/db"
    conninfo = f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    # ?host=/run/postgresql: a Unix socket's folder, as libpq documents it
    host = opts.get("host") or parts.hostname or "localhost"
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
