"""A dispatched command is refused as `App.submit` refuses the same request: a tag or
tenant the database cannot store, a budget that is no `ai.Budget`, an outbox batch
larger than a database LIMIT; each an error naming it, nothing created or sent."""

from __future__ import annotations

import json

import pytest

import tether
from tether import App, Workflow
from tether.kernel import (
    CallableSink,
    CollectingSink,
    OutboxEvent,
    OutboxFlushed,
    OutboxPolicy,
    RunCreated,
)


def _register(app: App) -> None:
    @app.workflow(name="w")
    async def w(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"tags": ["ok", "a\x00b"]}, r"tags: .*tag .* contains a NUL"),
        ({"tenant": "t\x00"}, r"tenant: .*tenant .* contains a NUL"),
        ({"tenant": "  "}, r"tenant: .*tenant must be a non-empty string"),
    ],
)
async def test_a_tag_or_tenant_the_database_cannot_store_is_refused(
    app: App, extra: dict[str, object], what: str
) -> None:
    # SQLite stored them, PostgreSQL failed with a bare store error
    _register(app)
    with pytest.raises(tether.InvalidArgumentError, match=f"invalid command: run.create.{what}"):
        await app.kernel.adispatch({"type": "run.create", "workflow": "w", **extra})
    assert await app.store.list_runs() == []


@pytest.mark.parametrize("budget", [{"max_udd": 2.0}, {"max_usd": "lots"}, {"max_usd": -1}])
async def test_a_budget_the_app_would_refuse_is_refused_by_the_kernel(
    app: App, budget: dict[str, object]
) -> None:
    # it was stored as given and ignored: the run then spent with no cap at all
    _register(app)
    with pytest.raises(tether.InvalidArgumentError, match="budget is not valid"):
        await app.kernel.adispatch({"type": "run.create", "workflow": "w", "budget": budget})
    assert await app.store.list_runs() == []


async def test_a_valid_budget_is_kept_as_the_app_keeps_it(app: App) -> None:
    _register(app)
    made = await app.kernel.adispatch(
        {"type": "run.create", "workflow": "w", "queue": "q", "budget": {"max_usd": 2}}
    )
    run = await app.store.get_run(made.workflow_id)  # type: ignore[union-attr]
    assert run is not None and run.budget is not None
    assert json.loads(run.budget)["max_usd"] == 2


@pytest.mark.parametrize("kind", ["outbox.flush", "outbox.replay_dead"])
async def test_an_outbox_batch_past_a_database_limit_is_refused(
    database_url: str, kind: str
) -> None:
    # a raw OverflowError on SQLite, a bare "bigint out of range" on PostgreSQL
    app = App(database_url, sinks=[CollectingSink()])
    try:
        with pytest.raises(tether.InvalidArgumentError, match="max_events: Input should be less"):
            await app.kernel.adispatch({"type": kind, "max_events": 2**63})
        done = await app.kernel.adispatch({"type": kind, "max_events": 2**63 - 1})
        assert done.model_dump().get("failed", 0) == 0
    finally:
        await app.aclose()


async def test_listing_dead_letters_and_jobs_past_a_database_limit_lists_them_all(
    database_url: str,
) -> None:
    # `tether outbox dead --limit 100000000000000000000` was a raw OverflowError
    # traceback on SQLite and a bare "bigint out of range" on PostgreSQL
    def refuse(event: OutboxEvent) -> None:
        raise ConnectionError("broker down")

    app = App(database_url, sinks=[CallableSink(refuse)])
    app.kernel.outbox = OutboxPolicy(max_attempts=1)
    try:
        _register(app)
        made = await app.kernel.adispatch({"type": "run.create", "workflow": "w", "queue": "q"})
        assert isinstance(made, RunCreated)
        flushed = await app.kernel.adispatch({"type": "outbox.flush"})
        assert isinstance(flushed, OutboxFlushed) and flushed.dead >= 1
        dead = await app.adead_letters(limit=10**20)
        assert {row.workflow_id for row in dead} == {made.workflow_id}
        assert len(dead) == flushed.dead
        jobs = await app.store.list_jobs(workflow_id=made.workflow_id, limit=10**20)
        assert [job.workflow_id for job in jobs] == [made.workflow_id]
    finally:
        await app.aclose()
