"""Where the tests find PostgreSQL.

Order: $TETHER_TEST_POSTGRES_URL; else a server on 127.0.0.1:5432 (trust
auth); else a throwaway cluster started from installed server binaries. If
none works the PostgreSQL tests are deselected and the run ends with one line
saying why (tests/conftest.py), unless TETHER_REQUIRE_POSTGRES=1, which turns
that into a failure.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from tether.store._url import POSTGRES_INSTALL


@dataclass
class PostgresServer:
    admin_url: str  # a database we may CREATE DATABASE from
    url: str  # this session's own database
    dbname: str
    _closers: list[object] = field(default_factory=list)

    def url_with_schema(self, schema: str) -> str:
        parts = urlsplit(self.url)
        query = urlencode({"schema": schema})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def drop_schema(self, schema: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def close(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        finally:
            for closer in reversed(self._closers):
                closer()  # type: ignore[operator]


def required() -> bool:
    """TETHER_REQUIRE_POSTGRES=1 (set by .ci/run): no PostgreSQL is a failure, not a skip."""
    return os.environ.get("TETHER_REQUIRE_POSTGRES") == "1"


def _unavailable(why: str) -> PostgresServer:
    if required():
        pytest.fail(f"PostgreSQL is required (TETHER_REQUIRE_POSTGRES=1) but {why}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {why}")


def _try(admin_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )


def _create_db(admin_url: str, closers: list[object] | None = None) -> PostgresServer:
    import psycopg

    dbname = f"tether_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", "", ""))
    return PostgresServer(admin_url, url, dbname, closers or [])


def _throwaway_cluster() -> PostgresServer | str:
    """Start a private cluster from installed server binaries; a reason string if we cannot."""
    import glob
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else []
    )
    if not bins or bins[-1] is None:
        return "no PostgreSQL server binaries (initdb) are installed"
    bindir = os.path.dirname(bins[-1])
    prefix: list[str] = []
    folder = tempfile.mkdtemp(prefix="tether-pg-")
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as postgres
        if shutil.which("runuser") is None:
            return "running as root without runuser to start a cluster as another user"
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = os.path.join(folder, "data")
    try:
        subprocess.run(
            [*prefix, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *prefix,
                f"{bindir}/pg_ctl",
                "-D",
                data,
                "-w",
                "-l",
                os.path.join(folder, "log"),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return f"could not start a throwaway cluster: {exc}"

    def stop() -> None:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)

    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    err = _try(admin)
    if err is not None:
        stop()
        return f"the throwaway cluster did not answer ({err})"
    return _create_db(admin, [stop])


def find_postgres() -> PostgresServer:
    """A database of this session's own, or skip (fail, if required) saying why not."""
    found = locate_postgres()
    return _unavailable(found) if isinstance(found, str) else found


def locate_postgres() -> PostgresServer | str:
    """A database of this session's own, or the reason there is none."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return f"the psycopg driver is not installed ({POSTGRES_INSTALL})"
    explicit = os.environ.get("TETHER_TEST_POSTGRES_URL")
    if explicit:
        err = _try(explicit)
        if err:
            return f"TETHER_TEST_POSTGRES_URL={explicit} is unreachable ({err})"
        return _create_db(explicit)
    local_err = "skipped (TETHER_TEST_POSTGRES_THROWAWAY=1)"
    if os.environ.get("TETHER_TEST_POSTGRES_THROWAWAY") != "1":
        for local in (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://127.0.0.1:5432/test",
        ):
            local_err = _try(local) or ""
            if not local_err:
                return _create_db(local)
    cluster = _throwaway_cluster()
    if isinstance(cluster, PostgresServer):
        return cluster
    return f"no server at 127.0.0.1:5432 ({local_err}) and {cluster}"
