"""Shipped migrations are never edited, and both dialects migrate to the same tables.

A migration that reached users is history: change the schema with a new
numbered file (and pin its hash here), never by editing an old one.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from tether.store import open_store
from tether.store._migrations import latest_version, migrations

from .._postgres import PostgresServer
from .._sql import sqlite_at

PINNED = {
    "postgresql": {
        "0001_core.sql": "d1fbd859f75c459861ca9e52d82da6178281751a89f633c98a9d1bdc07bdc580",
        "0002_waitpoints.sql": "a5300717d4f9a8680c097d5b7ae1cb1ea4134bd7e3ce38221f4be4eaa59a9018",
        "0003_queue_outbox.sql": "3f5eca25a46fd46531f4be60f1c1a24f3011fc60403110a53009110e81bc0796",
        "0004_run_owner_lease.sql": "7edc6caea28bc660110958f4b8fa7346c20c444e793b70e41753e3ff4b4bdeda",
        "0005_step_identity.sql": "850b05ac59f5d367509096e77251e57e1ca9730d6af5f714bd47aaafa6d5f7c0",
        "0006_schedules.sql": "09804f68cd656dd963ba368c2d7016d45834cd25d2015fe844fcf466b616bd6a",
        "0007_ai_calls.sql": "640b246a355d2ab2199fa87478f6bb133cabb55479975f31cd0f370ff2e01909",
        "0008_stages.sql": "aad1a95c3cd768548933c621fae9563a1774b5f08ce764bbde4e26b99ed022c3",
        "0009_api.sql": "2b62d9c86a169bda9b1ec58be061ed97dbe19653a5201f8f1eb062a11755e393",
        "0010_end_reason.sql": "f5b318cba843a6bc7fcc663d3727ed5512952a17296e5d227e3491d70876d566",
        "0011_ai_spend_index.sql": "c2f5ae8f499902d7b444849bc7db887ea337c678c792e71998991df3c8c2fe8c",
        "0012_ai_call_run_attempt.sql": "5296de0f8960aa81a0ce8d83ae4ea60caf367981a5c78094f7e76aa53ff49708",
        "0013_ai_call_retention.sql": "d9cdd9a078a2ec5d361a65ecd65433df15a6012ecd368afc5d8c02037ef2b3b5",
        "0014_job_workflow.sql": "aa66ae5dbb24bfea6a38913056366dffca434e761c7ee363b9fb84ff237f0029",
        "0015_state_history.sql": "040c536cd850e0111c21d55f1b26e38db6cc4a9090df6052de6130a10ba44db6",
        "0016_wait_order.sql": "9a8c780dc556da471b6b64083b4e99c20456904df5793ff54485bd0dc79836da",
        "0017_blob_key_bytes.sql": "012f4a94ac43e65a2c935f091f4f69ded18d2adaa3cf6fadf5a5da675a8891f9",
        "0018_ai_spend_since.sql": "a6cd8fb8ac0a9846116ed1913fc866722682cf427a0d2b206349464590d5794a",
        "0019_ai_batch_item_provider.sql": "1d562e54fb42f0ccf22e470bdffb0b616b37e23bc8cadc2fe97cbde5648d6522",
        "0020_runs_id_bytes.sql": "339846cf6885249288edd7d5258c2b6a86f4c25a03d6e73b4ef3eba5899b7871",
        "0021_jobs_due.sql": "1167187ba81723886223c5c6d079a17cb801f7b0decf1d33fb0b141a3c34fc39",
        "0022_ai_call_billed.sql": "fd83208f9f8eb1654388b7e4a165b7e7eea702e694816940fced22b129138631",
        "0023_json_key_order.sql": "07572aa4d59b9b1a6bc1acf90dcd1c29e07e6e2371b4152092070947e366d9d4",
    },
    "sqlite": {
        "0001_core.sql": "a243e4a11c3b2854d7027cd3aa85f5ed9fa5fb97201936ecb0a7fa3d17ebfd44",
        "0002_waitpoints.sql": "0314e0ae742b5ad9993feb432843d3e9f6ce801cbb30cb20cae9c3bb521b7e92",
        "0003_queue_outbox.sql": "9d14b85558c340dd142f8d54f3d89a411e5e5ce732739903c20e4934a2520367",
        "0004_run_owner_lease.sql": "29cbbb9e51d18f401bdb0daa7ac6d27bd1b2fd6a3c22c0a9f4011318ff6c0388",
        "0005_step_identity.sql": "850b05ac59f5d367509096e77251e57e1ca9730d6af5f714bd47aaafa6d5f7c0",
        "0006_schedules.sql": "bffd205dca9d90754bfbcf41a4427209fee8c3b0e6cc71d38fe8ff1d207e8bb1",
        "0007_ai_calls.sql": "102db745d2c5b6cd7b84a8e78dc92b4b4961455c3fcde192ac0bfc3f730dc3b7",
        "0008_stages.sql": "0f178d24c2f3adfea87a536612a684a61977a10dabf9ff6d03eb9e80aee0db02",
        "0009_api.sql": "6f7811d8fce8cbafb9902240ec75b2d9f63e882b0ac5171872d6e894c816b5d0",
        "0010_end_reason.sql": "bea07c1cc34e04a6d8204c8d5605c4fc8ff2443cfd818cf7bd99bf1afdff38a7",
        "0011_ai_spend_index.sql": "a7a9353b4586bc88e5519fc532afd798bce344aa0e7a52bc668f17d59034dd4e",
        "0012_ai_call_run_attempt.sql": "5296de0f8960aa81a0ce8d83ae4ea60caf367981a5c78094f7e76aa53ff49708",
        "0013_ai_call_retention.sql": "d9cdd9a078a2ec5d361a65ecd65433df15a6012ecd368afc5d8c02037ef2b3b5",
        "0014_job_workflow.sql": "b8422c3a4481b6beb31022da791c5d5e0039e6fe2e5a41e468d28c9489de9a60",
        "0015_state_history.sql": "b4aca5adb17edaa1319777be0885ba70f59d114f8a12d3fe67947f1ce1a8fa44",
        "0016_wait_order.sql": "9216f398f1fb7e035b720e77f12002b49cf590ce9a783a9e224fa71d90b6d47e",
        "0017_blob_key_bytes.sql": "c3b7fa7a0f53116e6aa79532bb17969ec85c4250e428cf8947d6977f05a4c456",
        "0018_ai_spend_since.sql": "c44d09f956825279ff6cbcaa71842b9e0fef1bb688440fb94403d711e063dcb4",
        "0019_ai_batch_item_provider.sql": "1d562e54fb42f0ccf22e470bdffb0b616b37e23bc8cadc2fe97cbde5648d6522",
        "0020_runs_id_bytes.sql": "1b570f9750b9bb33f89849fdb16e8892fe4a70c8e44034e935986d0694c190aa",
        "0021_jobs_due.sql": "68ab66362bb048f301badb3937de11f98fa12c8a8b60b0bae169dd71a45c8c2c",
        "0022_ai_call_billed.sql": "aed853d6a95b3207c4000b365145559695816c2b515e402b3926e0b5027c8095",
        "0023_blob_body_last.sql": "4d1670784af4e80c5537b6b85796b10c7f3699d255cf9e0c5d79b26c8b5c4f9a",
    },
}


@pytest.mark.parametrize("dialect", sorted(PINNED))
def test_shipped_migrations_are_never_edited(dialect: str) -> None:
    folder = resources.files("tether.store").joinpath("schema", dialect)
    found = {
        f"{m.version:04d}_{m.name}.sql": hashlib.sha256(
            folder.joinpath(f"{m.version:04d}_{m.name}.sql").read_bytes()
        ).hexdigest()
        for m in migrations(dialect)
    }
    for name, digest in PINNED[dialect].items():
        assert found.get(name) == digest, f"{dialect}/{name} was edited: add a new migration"
    unpinned = sorted(set(found) - set(PINNED[dialect]))
    assert not unpinned, f"pin the sha256 of the new migration(s) {unpinned} here"


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        conn.close()


def _pg_columns(server: PostgresServer, schema: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with psycopg.connect(server.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


async def test_both_dialects_migrate_to_the_same_tables_and_columns(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    lite = open_store(f"sqlite:///{tmp_path}/schema.db")
    await lite.open()
    await lite.close()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    pg = open_store(postgres.url_with_schema(schema))
    try:
        await pg.open()
        await pg.close()
        assert _pg_columns(postgres, schema) == _sqlite_columns(tmp_path / "schema.db")
    finally:
        postgres.drop_schema(schema)


# (id, status, error as an older tether wrote it) -> the end reason 0010 fills in
OLD_RUNS = [
    ("p", "pending", None, None),
    ("r", "running", None, None),
    ("w", "waiting", None, None),
    ("c", "completed", None, "completed"),
    ("f", "failed", '{"type": "ValueError", "message": "no", "traceback": "..."}', "failed"),
    ("t", "failed", '{"type": "WorkflowTimeoutError", "module": "tether.errors"}', "timed_out"),
    ("x", "cancelled", '{"type": "Cancelled", "message": "stop", "traceback": null}', "cancelled"),
    ("xc", "compensated", '{"type": "Cancelled", "message": "stop"}', "cancelled"),
    ("xf", "compensation_failed", '{"type":"Cancelled","message":"stop"}', "cancelled"),
    # the message holds the text the old rule searched for; the type says it failed
    (
        "fc",
        "compensated",
        '{"type": "ValueError", "message": "\\"type\\":\\"Cancelled\\""}',
        "failed",
    ),
    ("fs", "failed", '"a bare string"', "failed"),
]


def _sqlite_at_0009(path: Path) -> None:
    sqlite_at(path, 9)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for wid, status, error, _ in OLD_RUNS:
            conn.execute(
                "INSERT INTO runs (id, workflow_name, status, error, created_at, updated_at) "
                "VALUES (?, 'wf', ?, ?, 0, 0)",
                (wid, status, error),
            )
    finally:
        conn.close()


def _pg_at_0009(server: PostgresServer, schema: str) -> None:
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for mig in migrations("postgresql")[:9]:
            conn.execute(mig.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
        for wid, status, error, _ in OLD_RUNS:
            conn.execute(
                "INSERT INTO runs (id, workflow_name, status, error, created_at, updated_at) "
                "VALUES (%s, 'wf', %s, %s::jsonb, now(), now())",
                (wid, status, error),
            )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_0010_fills_in_why_old_runs_ended(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A database at 0009 holding runs in every status: the migration gives each
    ended run its reason, read once from its status and its error's type."""
    if backend == "sqlite":
        _sqlite_at_0009(tmp_path / "old.db")
        url, cleanup = f"sqlite:///{tmp_path}/old.db", None
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        _pg_at_0009(server, schema)
        url, cleanup = server.url_with_schema(schema), lambda: server.drop_schema(schema)
    store = open_store(url)
    try:
        await store.open()
        assert await store.schema_version() == latest_version(store.dialect)  # 0010 and on
        got = {}
        for wid, *_ in OLD_RUNS:
            run = await store.get_run(wid)
            assert run is not None
            got[wid] = None if run.end_reason is None else run.end_reason.value
        assert got == {wid: reason for wid, _, _, reason in OLD_RUNS}
    finally:
        await store.close()
        if cleanup is not None:
            cleanup()
