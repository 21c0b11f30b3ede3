"""A run's record read back from its JSON (`RunRecord.from_dict`, as a `Client` reads
it over HTTP) is the record written, steps named by their keys; what is not such a
dict is refused saying what to pass."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tether import App, FakeClock, InvalidArgumentError, RunRecord, Workflow


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock)
    yield the_app
    await the_app.aclose()


async def test_a_record_with_repeated_and_keyed_steps_reads_back_the_same(app: App) -> None:
    """Read back, ``ask#2`` was named ``ask`` and ``pay@order-7`` ``pay``: the record
    differed from the one written, and the CLI, which finds a step the budget stopped
    by its key in the step's name, showed it as an answered call."""

    @app.workflow(name="steps")
    async def steps(wf: Workflow) -> int:
        for i in range(2):
            await wf.step("ask", lambda i=i: i)
        await wf.step("pay", lambda: "paid", idempotency_key="order-7")
        done = await wf.for_each([1, 2], lambda x: x * 2)
        return len(done.results)

    await app.arun(steps, workflow_id="s")
    record = await app.aget_record("s")
    assert {"ask", "ask#2", "pay@order-7", "for_each.items#1"} <= set(record.steps)
    back = RunRecord.from_dict(json.loads(record.to_json()))
    assert {k: s.name for k, s in back.steps.items()} == {k: k for k in record.steps}
    assert back == record


async def test_what_is_not_a_record_dict_is_refused_saying_what_to_pass(app: App) -> None:
    @app.workflow(name="one")
    async def one(wf: Workflow) -> int:
        return 1

    await app.arun(one, workflow_id="o")
    record = await app.aget_record("o")
    with pytest.raises(InvalidArgumentError, match=r"got str; pass e\.g\. json\.loads\(text\)"):
        RunRecord.from_dict(record.to_json())  # type: ignore[arg-type]
    cut = record.to_dict()
    del cut["steps"]
    with pytest.raises(InvalidArgumentError, match="'steps' is missing"):
        RunRecord.from_dict(cut)
