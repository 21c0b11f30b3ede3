"""Which database a command uses, one rule for every command:

1. ``--db URL`` (before or after the command);
2. else ``$TETHER_DATABASE_URL``;
3. else the database of the App in the module the command loads (``--app``, or
   the file ``tether run`` runs, when it defines an App);
4. else ``sqlite:///.tether/tether.db`` in the working directory.

When the URL chosen is not the module App's own, the App is built again on it
with everything else it was given (sinks, leases, registered workflows).
Commands that only read or steer runs never create a database: they first
check that one is there.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from ..app import App
from ..errors import InvalidArgumentError, StoreError, TetherError
from ..store import DEFAULT_URL, ENV_VAR, check_url, parse_sqlite_url, redact
from ._common import EXIT_STORE, EXIT_USAGE, CliState, fail, guard, note

__all__ = [
    "PRECEDENCE",
    "Database",
    "bind",
    "choose",
    "db_flag",
    "given_db",
    "open_app",
    "read_app",
    "require_existing",
    "use_app",
]

T = TypeVar("T")

PRECEDENCE = """Which database a command uses, in this order:
  1. --db URL (before or after the command name)
  2. $TETHER_DATABASE_URL
  3. the database of the App in the module given (--app, or the file
     `tether run` runs, if it defines an App)
  4. sqlite:///.tether/tether.db in the working directory
Commands that read or steer runs never create a database."""


@dataclass(frozen=True)
class Database:
    url: str
    source: str  # where the URL came from, for the start-up line

    @property
    def shown(self) -> str:
        """The URL with its password hidden."""
        return redact(self.url)

    def announce(self) -> None:
        """One line on stderr, for long-running commands: which database, and why."""
        note(f"database: {self.shown} (from {self.source})")


def choose(flag: str | None, module_app: App | None = None, where: str = "") -> Database:
    """The database by the rule above; an unreadable URL exits 2."""
    try:
        if flag is not None:  # `--db ""` too: "$DB_URL" unset must not pick another database
            _check_kind(flag, "--db")
            return Database(flag, "--db")
        env = os.environ.get(ENV_VAR)
        if env:
            _check_kind(env, f"${ENV_VAR}")
            return Database(env, f"${ENV_VAR}")
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    if module_app is not None and module_app.database_url:
        return Database(module_app.database_url, f"the App in {where}")
    return Database(DEFAULT_URL, "the default")


def db_flag(url: str | None) -> str:
    """`` --db URL`` for a command named in a hint that loads no module (`runs signal`),
    where the rule would not pick `url` by itself ($TETHER_DATABASE_URL, else the
    default): `tether run` on the App's database told to `tether runs signal` a run
    that command then looked for elsewhere. A password in it is hidden."""
    if url is None or url == (os.environ.get(ENV_VAR) or DEFAULT_URL):
        return ""
    return f" --db {shlex.quote(redact(url))}"


def given_db(state: CliState) -> str:
    """`` --db URL`` when the command was given one, for the command it names to go on
    with (`tether run ... --id` to resume): without it, that command picked another
    database and started the run afresh there. A password in it is hidden."""
    return "" if state.db is None else f" --db {shlex.quote(redact(state.db))}"


def _check_kind(url: str, what: str) -> None:
    """`check_url`, and a URL of a kind tether stores in (a bare path or another
    scheme was refused as "not a PostgreSQL URL")."""
    if not url.strip():
        raise InvalidArgumentError(
            f"{what} is blank (a shell variable that is not set?); give a database URL, "
            "e.g. sqlite:///runs.db or postgresql://user@host:5432/db"
        )
    scheme = check_url(url, what).scheme
    if scheme in ("sqlite", "postgresql", "postgres"):
        return
    shown = repr(redact(url)) if len(url) <= 200 else repr(redact(url)[:200]) + "..."
    hint = (
        f"for a SQLite file write sqlite:///{url}"
        if not scheme and "://" not in url
        else "use sqlite:///path/to/file.db or postgresql://user@host:5432/db"
    )
    kind = f"a {scheme}:// URL" if scheme else "not a URL"
    raise InvalidArgumentError(
        f"{what} {shown} is {kind}; tether stores in SQLite or PostgreSQL: {hint}"
    )


def bind(module_app: App, db: Database) -> App:
    """`module_app` itself when it already uses `db`, else the same App rebuilt on it."""
    _require_writable_folder(db)
    if module_app.database_url == db.url:
        return module_app
    try:
        rebuilt = module_app.with_database(db.url)
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    module_app.close()  # it never opened its store: connecting is lazy
    return rebuilt


def open_app(db: Database) -> App:
    """A bare App (no workflows registered) on `db`."""
    _require_writable_folder(db)
    try:
        return App(db.url)
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))


def require_existing(db: Database) -> None:
    """Exit 4, naming the place, unless `db` holds a tether database (never create one)."""
    try:
        problem = _sqlite_missing(db) if db.url.startswith("sqlite:") else _pg_missing(db)
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    if problem:
        fail(
            EXIT_STORE,
            f"{problem} (database from {db.source}); pass --db URL or set "
            f"${ENV_VAR} to the database your runs are in",
        )


def _sqlite_missing(db: Database) -> str | None:
    missing = _in_missing_folder(db.url)
    if missing is not None:
        return f"no tether database at {missing}: its folder {missing.parent} does not exist"
    config = parse_sqlite_url(db.url)
    if config.in_memory:
        return "an in-memory database (sqlite:///:memory:) is empty in a new process"
    path = Path(config.path).resolve()
    if path.is_dir():  # it said "the file does not exist", of a folder that does
        return (
            f"no tether database at {path}: it is a folder; name the database file in "
            f"it, e.g. sqlite:///{path / 'tether.db'}"
        )
    if not path.is_file():
        return f"no tether database at {path}: the file does not exist"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if (read_only := _read_only_folder(path)) is not None:
            fail(EXIT_STORE, f"{read_only} (database from {db.source})")
        return f"{path} is not a readable SQLite database ({exc})"
    return None if found else f"{path} is not a tether database (it has no tether tables)"


def _require_writable_folder(db: Database) -> None:
    """Exit 4 when `db` is a SQLite file in a folder this process cannot write: the
    store said "not a readable SQLite database" of a sound one there, and of a new one
    "cannot open SQLite database: unable to open database file"."""
    if not db.url.startswith("sqlite:") or _in_missing_folder(db.url) is not None:
        return  # a missing folder: the App's own error says to create it
    try:
        config = parse_sqlite_url(db.url)
    except TetherError:
        return  # a bad URL: opening the App says why (exit 2)
    if config.in_memory:
        return
    read_only = _read_only_folder(Path(config.path).resolve())
    if read_only is not None:
        fail(EXIT_STORE, f"{read_only} (database from {db.source})")


def _read_only_folder(path: Path) -> str | None:
    """Why a tether database in a folder that cannot be written (a read-only mount) does
    not open: it is in WAL mode, and even a reader must make its -wal and -shm files
    beside it. It was called "not a readable SQLite database", of a sound one."""
    if os.access(path.parent, os.W_OK):
        return None
    beside = [path.with_name(path.name + end) for end in ("-wal", "-shm")]
    if all(os.access(f, os.W_OK) for f in beside):  # made already (a writer has it open)
        return None
    return (
        f"cannot open {path}: its folder {path.parent} is read-only, and SQLite must "
        f"create {path.name}-wal and {path.name}-shm beside the database even to read "
        "it; make the folder writable, or use a database in a writable folder"
    )


def _in_missing_folder(url: str) -> Path | None:
    """The SQLite file `url` names, when its folder does not exist. `parse_sqlite_url`
    refuses such a URL (exit 2, "create it first": a typo must not make folders), but
    to a command that only reads it is a database that is not there (exit 4)."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path or path == ":memory:" or "\x00" in path:
        return None  # a bad URL: parse_sqlite_url says why
    file = Path(path).absolute()
    return None if file.parent.is_dir() else file


def _pg_missing(db: Database) -> str | None:
    import psycopg

    from ..store import parse_pg_url

    config = parse_pg_url(db.url)
    where = f"PostgreSQL at {config.host}, database {config.dbname!r}"
    try:
        with psycopg.connect(config.conninfo, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute(
                "SELECT to_regclass(%s)", (f"{config.ident}.schema_version",)
            ).fetchone()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot connect to {where}: {first}"
    if row is None or row[0] is None:
        return f"no tether database in {where}: it has no tether schema {config.schema!r}"
    return None


def read_app(state: CliState) -> App:
    """An App on the chosen database, which must already exist (never create one)."""
    db = choose(state.db)
    require_existing(db)
    return open_app(db)


def use_app(state: CliState, action: Callable[[App], T]) -> T:
    """`action` on `read_app`'s App, tether's errors made an exit code, the App closed after."""
    the_app = read_app(state)
    try:
        return guard(lambda: action(the_app))
    finally:
        the_app.close()
