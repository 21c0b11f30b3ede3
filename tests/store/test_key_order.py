"""A dict read back keeps its keys in the order they were written, on both backends.

PostgreSQL kept JSON in jsonb, which sorts an object's keys (shortest first): a
dict a step returned came back on replay in another order than the first run
saw, so code that iterates over it (naming steps after its keys) did something
else on replay. Migration 0023 keeps the text as written, as SQLite does.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tether import App, Workflow

from .._postgres import PostgresServer

# keys whose written order is neither sorted nor jsonb's (shortest first)
WRITTEN = {"zeta": 1, "a": {"yy": 1, "b": [{"k22": 0, "k1": 1}]}, "mm": 2.5}


def order(value: Any) -> Any:
    """The keys of every object in `value`, in their order, nested as found."""
    if isinstance(value, dict):
        return [[k, order(v)] for k, v in value.items()]
    if isinstance(value, list):
        return [order(v) for v in value]
    return None


def _never() -> Any:
    raise AssertionError("a completed step ran again on replay")


async def test_a_steps_dict_replays_in_its_order(app: App) -> None:
    wid = f"order-{uuid.uuid4().hex[:8]}"
    first = await (await app.aopen(wid)).step("s", lambda: dict(WRITTEN))
    replayed = await (await app.aopen(wid)).step("s", _never)
    assert replayed == WRITTEN
    assert order(replayed) == order(first) == order(WRITTEN)


async def test_input_state_payloads_and_output_keep_their_order(app: App) -> None:
    @app.workflow
    async def ordered(wf: Workflow, given: dict[str, Any]) -> dict[str, Any]:
        signal = await wf.wait_for_signal("go")
        event = await wf.wait_for_event("tick")
        # this drive replays the input, the state and the signal from the store
        return {
            "input": order(given),
            "state": order(wf.state),
            "signal": order(signal),
            "event": order(event),
            "echo": signal,
        }

    wid = f"order-{uuid.uuid4().hex[:8]}"
    parked = await app.arun(ordered, WRITTEN, workflow_id=wid, initial_state=WRITTEN)
    assert parked.status.value == "waiting"
    await app.asignal(wid, "go", WRITTEN)
    assert (await app.aresume(wid)).status.value == "waiting"
    await app.asend_event("tick", WRITTEN)
    done = await app.aresume(wid)
    assert done.status.value == "completed"
    expected = order(WRITTEN)
    assert done.value["input"] == expected
    assert done.value["state"] == expected
    assert done.value["signal"] == expected
    assert done.value["event"] == expected
    output = (await app.aget_record(wid)).output  # read back from the store
    assert list(output) == ["input", "state", "signal", "event", "echo"]
    assert order(output["echo"]) == expected


async def test_postgresql_keeps_run_values_as_json_not_jsonb(postgres: PostgresServer) -> None:
    """Every JSON column but the tags (matched with @>) holds json after the upgrade,
    and a value an older tether wrote into jsonb reads back the same."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    app = App(postgres.url_with_schema(schema))
    try:
        wf = await app.aopen("old")
        await wf.step("s", lambda: {"big": 1e23, "b": 1})
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND data_type IN ('json', 'jsonb')",
                (schema,),
            ).fetchall()
        jsonb = {(t, c) for t, c, kind in rows if kind == "jsonb"}
        assert jsonb == {("runs", "tags")}
        assert ("steps", "result") in {(t, c) for t, c, _ in rows}
        replayed = await (await app.aopen("old")).step("s", _never)
        assert replayed == {"big": 1e23, "b": 1} and isinstance(replayed["big"], float)
    finally:
        await app.aclose()
        postgres.drop_schema(schema)
