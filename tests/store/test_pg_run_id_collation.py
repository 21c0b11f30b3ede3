"""Run ids under a database whose collation is a language's (en-US ignores the
punctuation at first): an agents dispatcher's issue runs `<key>`, `<key>:2` ...
are still found as their key's range, byte by byte (migration 0020's index)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from tether.store import NewRun
from tether.store._postgres import PostgresStore

from .._postgres import PostgresServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_the_newest_generation_is_found_under_an_en_us_collation(
    postgres: PostgresServer,
) -> None:
    """'P-1:3' sorts after 'P-1;' in en-US: the range missed every run but the first,
    and a dispatcher took its issue's first run for the newest."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'")
        if found.fetchone() is None:
            pytest.skip("this server has no ICU en-US collation")
    schema = f"coll_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(postgres.url_with_schema(schema))
    await store.open()
    try:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(
                f'ALTER TABLE "{schema}".runs ALTER COLUMN id TYPE text COLLATE "en-US-x-icu"'
            )
        for wid in ("P-1", "P-1:2", "P-1:3", "P-10", "P-1a:4", "Q-2:7"):
            await store.create_run(NewRun(wid, "w"), T0)
        newest = await store.newest_generations(["P-1", "Q-2", "P-10"])
        assert {k: r.workflow_id for k, r in newest.items()} == {
            "P-1": "P-1:3",
            "Q-2": "Q-2:7",
            "P-10": "P-10",
        }
    finally:
        await store.close()
        postgres.drop_schema(schema)
