"""A deleted run takes its AI calls with it: a new run given the same id starts with
no calls and no spend, and stored prompts go once no call names them."""

from __future__ import annotations

import pytest

from tether import App, RunStatus, Workflow, ai
from tether.clock import FakeClock

from .._sql import execute

LONG_SHARED = "system: " + "s" * 9000  # above the size stored once in ai_blobs
LONG_OWN = "mine: " + "m" * 9000


def _count_blobs(url: str) -> int:
    return int(execute(url, "SELECT count(*) FROM ai_blobs")[0][0])


async def test_a_deleted_runs_calls_go_and_its_id_starts_afresh(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(lambda model, request: "answer", usage=ai.Usage(input_tokens=1_000_000))
    prices = ai.Prices({"fake:m": {"input_per_million": 0.4, "output_per_million": 1}})
    app = App(database_url, clock=clock, ai=ai.Providers(fake=fake, prices=prices))

    @app.workflow(name="asks")
    async def asks(wf: Workflow, prompts: list[str]) -> int:
        for p in prompts:
            await wf.ai.generate_text("fake:m", prompt=p)  # $0.40 each
        return len(prompts)

    try:
        await app.arun(asks, [LONG_SHARED, LONG_OWN], workflow_id="dup")
        await app.arun(asks, [LONG_SHARED], workflow_id="other")
        assert _count_blobs(database_url) == 2
        await app.adelete_run("dup")
        assert await app.store.list_ai_calls(["dup"]) == []  # the run is gone too
        assert _count_blobs(database_url) == 1  # its own prompt went, the shared one stays
        (kept,) = await app.alist_ai_calls("other")
        assert kept.prompt is not None and LONG_SHARED in kept.prompt
        # the same id again: its call is logged, and it has spent nothing before it
        again = await app.arun(asks, ["short"], workflow_id="dup", budget=ai.Budget(max_usd=0.5))
        assert again.status is RunStatus.COMPLETED
        (new,) = await app.alist_ai_calls("dup")
        assert new.prompt is not None and "short" in new.prompt
        usage = (await app.aget_record("dup")).usage
        assert usage is not None and usage.total.calls == 1
        assert usage.total.cost_usd == pytest.approx(0.4)
        (total,) = await app.ausage()
        assert total.calls == 2  # "other" and the new "dup"
    finally:
        await app.aclose()


async def test_prune_takes_the_calls_of_the_runs_it_deletes(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(
        lambda model, request: "answer", usage=ai.Usage(input_tokens=10, output_tokens=1)
    )
    app = App(database_url, clock=clock, ai=ai.Providers(fake=fake))

    @app.workflow(name="one")
    async def one(wf: Workflow, key: str) -> str:
        return (await wf.ai.generate_text("fake:m", prompt=LONG_OWN + key)).text

    try:
        await app.arun(one, "a", workflow_id="old")
        clock.advance(3600)
        await app.arun(one, "b", workflow_id="new")
        assert await app.aprune("30m") == 1
        assert await app.store.list_ai_calls(["old"]) == []
        assert len(await app.alist_ai_calls("new")) == 1
        assert _count_blobs(database_url) == 1
    finally:
        await app.aclose()
