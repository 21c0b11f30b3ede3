"""PostgreSQL URLs as a user writes them: a schema that is a keyword or in mixed case,
an option value with an encoded space."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode, urlsplit, urlunsplit

from tether import App, Workflow
from tether.cli._db import Database, require_existing
from tether.store import parse_pg_url
from tether.store._postgres import PostgresStore

from .._postgres import PostgresServer


async def hello(wf: Workflow) -> str:
    return await wf.step("hi", lambda: "hi")


async def test_a_schema_named_by_a_keyword_works(postgres: PostgresServer) -> None:
    """schema=order was a syntax error at start-up, reported as "check the server runs"."""
    url = postgres.url_with_schema("order")
    app = App(url)
    app.workflow(hello)
    try:
        assert (await app.arun(hello, workflow_id="k1")).value == "hi"
        require_existing(Database(url, "--db"))  # the CLI finds it there (no exit)
    finally:
        await app.aclose()
        postgres.drop_schema("order")


async def test_a_mixed_case_schema_wakes_its_listeners(postgres: PostgresServer) -> None:
    """LISTEN folds an unquoted channel to lower case and pg_notify does not: on
    schema=Mixed a write woke no worker and no `result()` waiter."""
    schema = f"Walk_{uuid.uuid4().hex[:8]}"
    url = postgres.url_with_schema(schema)
    waiter, writer = PostgresStore(url), PostgresStore(url)
    await waiter.open()
    await writer.open()
    try:
        await waiter.wait_for_change("jobs", 0.01)  # its listener is up from here on
        await writer._tx("write", lambda tx: tx.notify("jobs"))
        assert await waiter.wait_for_change("jobs", 10.0) is True
    finally:
        await waiter.close()
        await writer.close()
        postgres.drop_schema(schema.lower())
    # the same schema PostgreSQL always made of it: data written before is found
    assert parse_pg_url(url).schema == schema.lower()


async def test_an_encoded_space_in_an_option_reaches_the_server(postgres: PostgresServer) -> None:
    """?application_name=my%20app was decoded and handed to libpq as "my app", which
    refused it: the store could not connect at all."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{postgres.url_with_schema(schema)}&{urlencode({'application_name': 'my app&co'})}"
    store = PostgresStore(url)
    await store.open()
    try:
        name = await store._with(
            lambda conn: conn.execute("SELECT current_setting('application_name')")
        )
        assert (await name.fetchone())[0] == "my app&co"
    finally:
        await store.close()
        postgres.drop_schema(schema)


async def test_a_role_given_tethers_tables_but_not_the_database_starts(
    postgres: PostgresServer,
) -> None:
    """A DBA migrated the schema and granted an application role its tables: that role
    could not start, as CREATE SCHEMA IF NOT EXISTS wants the right to create schemas
    in the whole database even for a schema that is there."""
    schema, role = f"t_{uuid.uuid4().hex[:12]}", f"r_{uuid.uuid4().hex[:12]}"
    owner_url = postgres.url_with_schema(schema)
    owner = App(owner_url)
    owner.workflow(hello)
    assert (await owner.arun(hello, workflow_id="by-owner")).value == "hi"
    await owner.aclose()
    _admin(
        postgres,
        f"CREATE ROLE {role} LOGIN PASSWORD 'walk'",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    )
    parts = urlsplit(owner_url)
    url = urlunsplit(parts._replace(netloc=f"{role}:walk@{parts.netloc.rpartition('@')[2]}"))
    app = App(url)
    app.workflow(hello)
    try:
        assert (await app.arun(hello, workflow_id="by-app")).value == "hi"
        assert {r.workflow_id for r in await app.alist_runs()} == {"by-owner", "by-app"}
    finally:
        await app.aclose()
        postgres.drop_schema(schema)
        _admin(postgres, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def _admin(postgres: PostgresServer, *statements: str) -> None:
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
