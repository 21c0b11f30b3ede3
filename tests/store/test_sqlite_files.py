"""The SQLite file: bad files are refused clearly, durability options, WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tether
from tether import App, Workflow
from tether.store import open_store


async def _noop(wf: Workflow) -> None:
    return None


async def test_garbage_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a database at all" * 100)
    app = App(f"sqlite:///{db}")
    with pytest.raises(tether.IncompatibleStoreError, match="not a readable SQLite database"):
        await app.arun(_noop, workflow_id="x")
    await app.aclose()
    assert db.read_bytes().startswith(b"this is not")  # nothing overwritten


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    app = App(f"sqlite:///{db}")
    with pytest.raises(tether.IncompatibleStoreError, match="did not create"):
        await app.arun(_noop, workflow_id="x")
    await app.aclose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM customers").fetchall() == [("ada",)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "runs" not in tables


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    await app.arun(_noop, workflow_id="kept")
    await app.aclose()
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 0)"
        )
    app = App(url)
    with pytest.raises(tether.IncompatibleStoreError, match=r"newer tether .*999"):
        await app.aget_record("kept")
    await app.aclose()
    with sqlite3.connect(tmp_path / "t.db") as conn:  # the recorded run is still there
        assert conn.execute("SELECT id FROM runs").fetchall() == [("kept",)]


async def test_directory_instead_of_file(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path}")
    with pytest.raises(tether.StoreUnavailableError, match="is a directory"):
        await app.aget_record("x")
    await app.aclose()


async def test_unwritable_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # only tether's default folder is made on first use; a file in its way is a store error
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tether").write_text("x")
    app = App("sqlite:///.tether/tether.db")
    with pytest.raises(tether.StoreUnavailableError, match="cannot create the folder"):
        await app.aget_record("x")
    await app.aclose()
    # any other missing folder is refused up front (tests/test_bad_input.py)
    with pytest.raises(tether.InvalidArgumentError, match="does not exist"):
        App(f"sqlite:///{tmp_path}/file/sub/t.db")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://host/x.db", "use three slashes"),
        ("sqlite:///x.db?durability=sometimes", "durability must be 'full' or 'normal'"),
        ("sqlite:///x.db?colour=blue", "unknown sqlite URL option"),
        ("mysql://localhost/db", "unsupported database URL"),
    ],
)
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=match):
        open_store(url)


async def test_wal_and_durability_options(tmp_path: Path) -> None:
    full = open_store(f"sqlite:///{tmp_path}/a.db")
    normal = open_store(f"sqlite:///{tmp_path}/b.db?durability=normal")
    override = open_store(f"sqlite:///{tmp_path}/c.db?durability=normal", durability="full")
    try:
        for store in (full, normal, override):
            await store.open()
        assert full.config.durability is tether.Durability.FULL  # type: ignore[attr-defined]
        assert normal.config.durability is tether.Durability.NORMAL  # type: ignore[attr-defined]
        assert override.config.durability is tether.Durability.FULL  # type: ignore[attr-defined]
        with sqlite3.connect(tmp_path / "a.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        for store in (full, normal, override):
            await store.close()


async def test_memory_store_works_and_is_private(clock: tether.FakeClock) -> None:
    a = App("sqlite:///:memory:", clock=clock)
    b = App("sqlite:///:memory:", clock=clock)
    try:
        await a.arun(_noop, workflow_id="only-in-a")
        assert [r.workflow_id for r in await a.alist_runs()] == ["only-in-a"]
        assert await b.alist_runs() == []
    finally:
        await a.aclose()
        await b.aclose()


def test_testing_fixture_gives_a_fresh_memory_app(tether_app: App) -> None:
    assert tether_app.store.url == "sqlite:///:memory:"
    assert isinstance(tether_app.clock, tether.FakeClock)
    assert tether_app.list_runs() == []


def test_many_processes_open_a_new_file_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    start_at = time.time() + 1.5
    code = (
        "import asyncio, sys, time\n"
        "from tether.store import open_store\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "async def main():\n"
        "    s = open_store(sys.argv[1]); await s.open(); print(await s.schema_version())\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    url = f"sqlite:///{tmp_path}/fresh.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs if e]
    assert len({o.strip() for o, _ in outs}) == 1
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        rows = conn.execute(
            "SELECT version, COUNT(*) FROM schema_version GROUP BY version"
        ).fetchall()
    assert all(n == 1 for _, n in rows) and len(rows) >= 3


async def test_a_budget_check_reads_an_index_alone(tmp_path: Path) -> None:
    """The spend sums read only the index that holds their columns (one pass over
    the run's calls in the index, not a visit to each row of the table)."""
    from tether.store._sql import queries

    store = open_store(f"sqlite:///{tmp_path}/spend.db")
    await store.open()
    await store.close()
    q = queries("sqlite")
    with sqlite3.connect(tmp_path / "spend.db") as conn:
        for name, params in (
            ("ai_spend_run", {"wid": "r", "since": 0.0}),
            ("ai_spend_key", {"bkey": "k", "since": 0.0}),
        ):
            plan = " ".join(
                str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {q[name]}", params)
            )
            assert "COVERING INDEX" in plan, (name, plan)


async def test_a_database_at_its_schema_opens_and_reads_beside_a_writer(tmp_path: Path) -> None:
    """Opening took the write lock to find no migration to apply: `tether runs list`
    beside another process's write transaction waited it out, then failed "database
    is locked" (with busy_timeout=0 here, at once)."""
    db = tmp_path / "t.db"
    first = App(f"sqlite:///{db}")
    await first.arun(_noop, workflow_id="kept")
    await first.aclose()
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock throughout
        reader = open_store(f"sqlite:///{db}?busy_timeout=0")
        try:
            await reader.open()
            run = await reader.get_run("kept")
            assert run is not None and run.status is tether.RunStatus.COMPLETED
        finally:
            await reader.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
