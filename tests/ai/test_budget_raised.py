"""A ``budget.raise`` a run took holds for the runs it starts after it: their calls are
checked against its raised limits, not the ones it was created with (official SDK,
real local server, both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, ChildRunError, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer

M = "openai:gpt-4.1-mini"
# the server's echo answer is 15 tokens: $1.20 a call at this price
PRICES = ai.Prices({M: {"input_per_million": 80_000, "output_per_million": 80_000}})


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url), prices=PRICES
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _raised(events: Any) -> list[Any]:
    return [e for e in events if e.type == "budget.raised"]


async def test_a_child_started_after_its_parents_raise_is_checked_against_the_raised_budget(
    app: App, server: ProviderServer
) -> None:
    """The child read the parent's budget as the parent was created with ($1.50): the
    raise to $10 the parent had just taken stopped the child at once, "$3.6000 of
    $1.5000", and the harness had to raise it a second time, on the child."""

    @app.workflow(name="kid")
    async def kid(wf: Workflow) -> str:
        return (await wf.ai.generate_text(M, prompt="kid")).text

    @app.workflow(name="boss", budget=ai.Budget(max_usd=1.5, on_exceed="pause"))
    async def boss(wf: Workflow) -> list[Any]:
        said: list[Any] = [(await wf.ai.generate_text(M, prompt=f"q{i}")).text for i in range(3)]
        try:
            said.append(await wf.child(kid))
        except ChildRunError as exc:  # not reached once the raise holds for the child
            said.append(exc.status)
        return said

    parked = await app.arun(boss, workflow_id="b")
    assert parked.status is RunStatus.WAITING  # its third call stopped at $2.40 of $1.50
    await app.asignal("b", "budget.raise", {"max_usd": 10})
    done = await app.aresume("b")
    assert done.value == ["echo: q0", "echo: q1", "echo: q2", "echo: kid"]
    child = await app.aget_record("b/kid#1")
    assert [e.type for e in child.events if e.type.startswith("budget.")] == []
    [told] = _raised(done.record.events)
    assert told.detail == {"budget_of": "b", "raise": 1, "max_usd": 10.0, "max_tokens": None}
    assert told.message == "the run's budget raised by signal: max_usd=10.0"
    assert server.count("POST /v1/chat/completions") == 4


async def test_a_raise_is_told_once_though_parallel_branches_and_later_drives_take_it(
    app: App,
) -> None:
    @app.workflow(name="fan", budget=ai.Budget(max_usd=1, on_exceed="pause"))
    async def fan(wf: Workflow) -> int:
        await wf.ai.generate_text(M, prompt="first")  # $1.20: the budget is spent

        async def one(i: int) -> str:
            return (await wf.ai.generate_text(M, prompt=f"b{i}")).text

        await wf.for_each([0, 1, 2], one, max_parallel=3)  # all three stopped
        await wf.wait_for_signal("go")  # parks: the next drive replays the raise
        return len((await wf.for_each([3, 4], one, max_parallel=2)).results)

    assert (await app.arun(fan, workflow_id="f")).status is RunStatus.WAITING
    await app.asignal("f", "budget.raise", {"max_usd": 50})
    assert (await app.aresume("f")).status is RunStatus.WAITING  # on "go"
    await app.asignal("f", "go", None)
    done = await app.aresume("f")
    assert done.value == 2
    assert len(_raised(done.record.events)) == 1
