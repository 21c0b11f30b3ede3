"""An upgrade that does not go to plan: the process migrating a database full of
history killed halfway, a migration that fails, two processes upgrading at once, and
a database a newer tether wrote. Each leaves the database as it was, or migrated
once, and openable."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tether.store._migrations import latest_version
from tether.testing import eventually_sync

from .._sql import execute
from .test_upgrade_walk42 import RUNS, _app, _history, _read, backend_urls, history_at

__all__ = ["backend_urls"]

# opens the store with `pending` (as the store reads it) pausing after the first
# migration it applies, in the migration's transaction, until killed
MIGRATE_THEN_HANG = textwrap.dedent(
    """
    import asyncio, sys
    import tether.store._postgres as pg, tether.store._sqlite as lite
    from tether.store import open_store
    def hanging(real):
        def pending(*args):
            found = real(*args)
            yield found[0]
            print("midway", flush=True)
            sys.stdin.read()
            yield from found[1:]
        return pending
    pg.pending = hanging(pg.pending)
    lite.pending = hanging(lite.pending)
    asyncio.run(open_store(sys.argv[1]).open())
    """
)


@contextlib.contextmanager
def _migrating(url: str) -> Iterator[subprocess.Popen[str]]:
    """A process upgrading the database at `url`, paused in its migration's transaction
    after the first migration (killed on the way out if still there)."""
    with subprocess.Popen(
        [sys.executable, "-c", MIGRATE_THEN_HANG, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "midway"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def _versions(url: str) -> list[int]:
    return [r[0] for r in execute(url, "SELECT version FROM schema_version ORDER BY version")]


@pytest.mark.parametrize("backend_urls", ["sqlite", "postgresql"], indirect=True)
async def test_a_process_killed_while_migrating_leaves_the_database_as_it_was(
    backend_urls: tuple[str, Any, Any],
) -> None:
    old, before = await history_at(backend_urls, 15)
    with _migrating(old) as proc:  # 0016 applied, not committed
        proc.send_signal(signal.SIGKILL)
    assert _versions(old) == list(range(1, 16))  # nothing of the upgrade stayed
    assert await _read(old) == before  # and it upgrades on the next open
    assert _versions(old) == list(range(1, latest_version(old.split(":")[0]) + 1))


@pytest.mark.parametrize("backend_urls", ["sqlite", "postgresql"], indirect=True)
async def test_a_migration_that_fails_applies_none_and_can_be_retried(
    backend_urls: tuple[str, Any, Any],
) -> None:
    """0019 meets an index of its name (a DBA's, or a hand-run half of it): the upgrade
    fails, leaves the database at 18 with every record, and succeeds once it is gone."""
    old, before = await history_at(backend_urls, 18)
    execute(old, "CREATE INDEX ai_calls_provider_batch_item ON ai_calls (provider)")
    app = _app(old)
    with pytest.raises(tether.StoreUnavailableError, match="ai_calls_provider_batch_item") as e:
        await app.aget_run("done")
    said = str(e.value)  # which migration, where the schema stays, what to do
    assert "migration 0019_ai_batch_item_provider failed" in said, said
    assert "stays at version 18" in said and "open the database again" in said, said
    assert "server runs" not in said and e.value.lasting
    await app.aclose()
    assert _versions(old) == list(range(1, 19))
    assert execute(old, "SELECT count(*) FROM runs") == [(len(RUNS),)]
    execute(old, "DROP INDEX ai_calls_provider_batch_item")
    assert await _read(old) == before


@pytest.mark.parametrize("backend_urls", ["sqlite", "postgresql"], indirect=True)
async def test_a_database_of_a_newer_tether_is_refused_and_left_alone(
    backend_urls: tuple[str, Any, Any],
) -> None:
    source, _, _ = backend_urls
    await _history(source)
    execute(
        source,
        "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'x', now())"
        if not source.startswith("sqlite")
        else "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'x', 0)",
    )
    runs = execute(source, "SELECT id, status, output FROM runs ORDER BY id")
    app = _app(source)
    with pytest.raises(tether.IncompatibleStoreError, match=r"version 999.*upgrade tether"):
        await app.aget_run("done")
    with pytest.raises(tether.IncompatibleStoreError, match="upgrade tether"):
        await app.asignal("sig", "go")
    await app.aclose()
    assert execute(source, "SELECT id, status, output FROM runs ORDER BY id") == runs
    assert _versions(source)[-2:] == [latest_version(source.split(":")[0]), 999]


OPEN = "import asyncio, sys\nfrom tether.store import open_store\n" + (
    "asyncio.run(open_store(sys.argv[1]).open())"
)


@pytest.mark.parametrize("backend_urls", ["postgresql"], indirect=True)
async def test_two_processes_upgrading_at_once_migrate_once(
    backend_urls: tuple[str, Any, Any],
) -> None:
    """The test holds the migration lock until both processes wait on it: one then
    migrates, the other finds the schema up to date."""
    import psycopg

    server = backend_urls[2]
    old, before = await history_at(backend_urls, 10)
    schema = old.split("schema=")[1]
    with psycopg.connect(server.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"tether-migrate:{schema}",))
        procs = [subprocess.Popen([sys.executable, "-c", OPEN, old]) for _ in range(2)]
        waiting = (  # on this schema's migration lock (its key's low 32 bits)
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid::bigint = (hashtext(%s)::bigint & 4294967295)"
        )
        eventually_sync(
            lambda: holder.execute(waiting, (f"tether-migrate:{schema}",)).fetchone() == (2,),
            timeout=60,
        )
        assert _versions(old) == list(range(1, 11))  # neither went ahead of the lock
        holder.execute("SELECT pg_advisory_unlock_all()")
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert _versions(old) == list(range(1, latest_version("postgresql") + 1))
    assert await _read(old) == before


@pytest.mark.parametrize("backend_urls", ["sqlite"], indirect=True)
async def test_a_process_opening_while_another_migrates_waits_for_it(
    backend_urls: tuple[str, Any, Any],
) -> None:
    """The first process holds its migration open (0011 applied) while a second one
    opens the file: the second waits out the write lock, then finds nothing to do."""
    old, before = await history_at(backend_urls, 10)
    with _migrating(old) as first:
        assert first.stdin is not None
        with subprocess.Popen([sys.executable, "-c", OPEN, old]) as second:
            first.stdin.close()  # let the first one finish its migration
            assert (first.wait(timeout=60), second.wait(timeout=60)) == (0, 0)
    assert _versions(old) == list(range(1, latest_version("sqlite") + 1))
    assert await _read(old) == before
