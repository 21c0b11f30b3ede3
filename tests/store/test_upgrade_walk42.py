"""A user upgrading tether with a database full of history: a database at an older
schema version holding runs in every status, their steps, pending waits of each kind,
queued and claimed jobs, a lease, a schedule and outbox events opens with this tether,
which migrates it once and reads back every record as it was; its waits still resume.

The rows are the ones this tether writes (made in a database of its own), copied into
a database built at the older version, column by column where the column existed."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tether import App, RunStatus, Workflow, ai
from tether.blobs import DatabaseBlobStore
from tether.store._migrations import latest_version
from tether.testing import eventually
from tether.worker import ServerlessHost

from .._postgres import PostgresServer
from .._sql import postgres_at, sqlite_at

VERSIONS = [5, 10, 15, 20, 22]
RUNS = ("done", "asks", "boom", "sig", "cancelled", "evt", "nap", "tok", "claimed", "queued")


def _app(url: str) -> App:
    app = App(url, ai=ai.Providers(fake=ai.FakeModel(["hello"] * 4)))

    @app.workflow(name="done")
    async def done(wf: Workflow) -> dict[str, Any]:
        got = await wf.step("a", lambda: {"z": 1, "a": [1, 2]})
        await wf.append_event("noted", detail={"k": "v"})
        await wf.touch_lease("slot", holder="h", ttl=3600)
        return {"out": got}

    @app.workflow(name="boom")
    async def boom(wf: Workflow) -> None:
        await wf.step("a", lambda: 1)
        with contextlib.suppress(ValueError):  # a failed step the run went on from
            await wf.step("fails", _fails, retry=1)
        raise ValueError("no")

    @app.workflow(name="asks")
    async def asks(wf: Workflow) -> str:
        return (await wf.ai.generate_text("fake:m", prompt="hi")).text

    @app.workflow(name="tok")
    async def tok(wf: Workflow) -> str:
        return str(await wf.wait_for_token(await wf.create_token()))

    @app.workflow(name="sig")
    async def sig(wf: Workflow) -> str:
        await wf.step("before", lambda: "x")
        return str(await wf.wait_for_signal("go"))

    @app.workflow(name="evt")
    async def evt(wf: Workflow) -> str:
        return str(await wf.wait_for_event("paid", match={"order": 7}))

    @app.workflow(name="nap")
    async def nap(wf: Workflow) -> str:
        await wf.sleep(36000)
        return "woke"

    @app.workflow(name="queued")
    async def queued(wf: Workflow) -> str:
        return await wf.step("s", lambda: "ran")

    app.schedule(queued, name="nightly", cron="0 3 * * *", queue="nightly")
    return app


def _fails() -> None:
    raise ValueError("step said no")


async def _waiting(app: App, wid: str) -> bool:
    return (await app.aget_run(wid)).status is RunStatus.WAITING


async def _history(url: str) -> None:
    """Runs in every status a user's database holds, written by this tether."""
    app = _app(url)
    try:
        await app.arun(app.get_workflow("done").fn, workflow_id="done")
        await app.arun(app.get_workflow("asks").fn, workflow_id="asks")
        await DatabaseBlobStore(app.store).put("runs/done/file", bytes(range(256)) * 9)
        with pytest.raises(ValueError):
            await app.arun(app.get_workflow("boom").fn, workflow_id="boom")
        for wid in ("sig", "cancelled"):
            await app.astart(app.get_workflow("sig").fn, workflow_id=wid)
        await app.acancel("cancelled")
        await app.astart(app.get_workflow("evt").fn, workflow_id="evt")
        await app.astart(app.get_workflow("nap").fn, workflow_id="nap")
        await app.astart(app.get_workflow("tok").fn, workflow_id="tok")
        for wid in ("sig", "evt", "nap", "tok"):
            await eventually(lambda wid=wid: _waiting(app, wid))
        fn = app.get_workflow("queued").fn
        await app.asubmit(fn, workflow_id="claimed", queue="q")
        assert [j.workflow_id for j in await ServerlessHost(app, queues="q").aclaim(1)] == [
            "claimed"
        ]
        await app.asubmit(fn, workflow_id="queued", queue="q")
        await app.afire_schedules()
    finally:
        await app.aclose()


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def _read(url: str) -> dict[str, Any]:
    app = _app(url)
    try:
        got: dict[str, Any] = {}
        for wid in RUNS:
            record = await app.aget_record(wid)
            waits = await app.alist_waits(wid)
            jobs = await app.ajobs(wid)
            got[wid] = (
                (record.status, record.end_reason, record.attempt, record.generation),
                (record.input, record.output, record.state, record.last_error),
                (record.created_at, record.started_at, record.finished_at),
                {k: (s.status, s.attempts, s.result, s.error) for k, s in record.steps.items()},
                [(e.type, e.message, e.detail, e.at) for e in record.events],
                {k: (x.holder, x.expires_at) for k, x in record.leases.items()},
                sorted((w.kind, w.name, w.status, _json(w.match), w.due_at) for w in waits),
                [(j.status, j.queue, j.attempt, j.worker, j.run_after) for j in jobs],
            )
        got["ai"] = [
            (c.step_key, c.provider, c.model, c.prompt, c.response, c.input_tokens, c.at)
            for c in await app.alist_ai_calls("asks")
        ]
        got["blob"] = await DatabaseBlobStore(app.store).get("runs/done/file")
        got["schedules"] = [(s.name, s.paused) for s in await app.alist_schedules()]
        return got
    finally:
        await app.aclose()


def _copy_sqlite(source: Path, target: Path) -> None:
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'schema_version' ORDER BY rowid"
            )
        ]
        for table in tables:
            cols = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}")
        conn.execute("DETACH DATABASE src")
    finally:
        conn.close()


def _copy_postgres(server: PostgresServer, source: str, target: str) -> None:
    with psycopg.connect(server.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = %s AND c.table_name != 'schema_version' "
            "ORDER BY c.table_name = 'runs' DESC, c.table_name, c.ordinal_position",
            (target,),
        ).fetchall()
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            columns.setdefault(table, []).append((column, kind))
        for table, cols in columns.items():
            names = ", ".join(c for c, _ in cols)
            values = ", ".join(f"{c}::text::{k}" if "json" in k else c for c, k in cols)
            conn.execute(
                f"INSERT INTO {target}.{table} ({names}) SELECT {values} FROM {source}.{table}"
            )
            if any(c == "id" and k == "bigint" for c, k in cols):
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{target}.{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {target}.{table}))"
                )


@pytest.fixture
def backend_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    """(url of this tether's own database, build(version) -> url of an older one)."""
    if request.param == "sqlite":
        source = tmp_path / "source.db"

        def build_sqlite(version: int) -> str:
            sqlite_at(tmp_path / "old.db", version)
            _copy_sqlite(source, tmp_path / "old.db")
            return f"sqlite:///{tmp_path}/old.db"

        yield f"sqlite:///{source}", build_sqlite, None
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]

    def build_postgres(version: int) -> str:
        postgres_at(server.url, schemas[1], version)
        _copy_postgres(server, schemas[0], schemas[1])
        return server.url_with_schema(schemas[1])

    try:
        yield server.url_with_schema(schemas[0]), build_postgres, server
    finally:
        for schema in schemas:
            server.drop_schema(schema)


async def history_at(backend_urls: tuple[str, Any, Any], version: int) -> tuple[str, Any]:
    """The url of a database at `version` holding this tether's history, and what the
    history reads as in this tether's own database."""
    source, build, _ = backend_urls
    await _history(source)
    return build(version), await _read(source)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend_urls", ["sqlite", "postgresql"], indirect=True)
async def test_a_database_full_of_history_upgrades_with_nothing_lost(
    backend_urls: tuple[str, Any, Any], version: int
) -> None:
    old, before = await history_at(backend_urls, version)
    if version < 6:  # no schedules table yet: a schedule's row is made when it fires
        before["schedules"] = []
    if version < 7:  # no AI call log yet
        before["ai"] = []
    if version < 8:  # no blobs table yet
        before["blob"] = None
    assert await _read(old) == before
    app = _app(old)
    try:
        assert await app.store.schema_version() == latest_version(app.store.dialect)
        assert await app.asignal("sig", "go", "late") is True
        assert await app.asend_event("paid", {"order": 7}) == ["evt"]
        (wait,) = await app.alist_waits("tok")
        assert await app.acomplete_token(wait.key.removeprefix("token:"), "done") == "tok"
        report = await ServerlessHost(app, queues="q").aprocess_available_jobs(limit=10)
        assert report.succeeded >= 1
        await app.asettle(timeout=30)
        assert (await app.aresult("sig", timeout=30)).value == "late"
        assert (await app.aresult("evt", timeout=30)).value == str({"order": 7})
        assert (await app.aresult("tok", timeout=30)).value == "done"
        assert (await app.aget_run("queued")).status is RunStatus.COMPLETED
    finally:
        await app.aclose()
