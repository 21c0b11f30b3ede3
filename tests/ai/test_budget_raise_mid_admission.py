"""A ``budget.raise`` one branch takes while a sibling's call is being admitted holds for
that call too (official SDK, real local server, both backends; the order forced by
holding store reads, never by time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._lineage import PRICES, M
from ._server import ProviderServer

# which branch a store read is made for (set in the branch: its task's own copy)
WHO: ContextVar[str] = ContextVar("who", default="")
GUARD = 60.0  # a deadlock guard only: the gates below open on each other's reads


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url), prices=PRICES
    )
    # no drive in the background on a signal: the next drive is the test's, armed
    the_app = App(database_url, clock=clock, ai=providers, resume_woken=False)
    yield the_app
    await the_app.aclose()


def _hold(app: App, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Once armed: branch "late"'s spend read waits until branch "stopped" reads the
    spend (it took the raise then), and "stopped" reads the runs above (on its way to
    the raise) only once "late" is reading the spend (it read the budgets before)."""
    state: dict[str, Any] = {"armed": False, "late": asyncio.Event(), "took": asyncio.Event()}
    spend, get_run = app.store.ai_spend, app.store.get_run

    async def ai_spend(workflow_id: str, budget_key: str | None, **how: Any) -> ai.Spend:
        if state["armed"] and WHO.get() == "late":
            state["late"].set()
            await asyncio.wait_for(state["took"].wait(), GUARD)
        elif state["armed"] and WHO.get() == "stopped":
            state["took"].set()
        return await spend(workflow_id, budget_key, **how)

    async def runs(workflow_id: str) -> Any:
        if state["armed"] and WHO.get() == "stopped":
            await asyncio.wait_for(state["late"].wait(), GUARD)
        return await get_run(workflow_id)

    monkeypatch.setattr(app.store, "ai_spend", ai_spend)
    monkeypatch.setattr(app.store, "get_run", runs)
    return state


async def test_a_raise_a_branch_takes_while_a_sibling_is_admitted_holds_for_the_sibling(
    app: App, server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sibling was judged on the budget as it was before the raise ($1.20 of $1.00)
    though the raise to $10 was taken meanwhile: it stopped as after that raise and
    waited for a second one, the run parked again with its budget already raised."""

    @app.workflow(name="fan", budget=ai.Budget(max_usd=1, on_exceed="pause"))
    async def fan(wf: Workflow) -> list[str]:
        await wf.ai.generate_text(M, prompt="first")  # $1.20: the budget is spent

        async def one(who: str) -> str:
            WHO.set(who)
            if who == "late":
                await wf.wait_for_signal("go")  # its call is first judged on the next drive
            return (await wf.ai.generate_text(M, prompt=who)).text

        summary = await wf.for_each(["stopped", "late"], one, max_parallel=2)
        return [str(v) for v in summary.values]

    state = _hold(app, monkeypatch)
    parked = await app.arun(fan, workflow_id="f")
    assert parked.status is RunStatus.WAITING  # "stopped" by the budget, "late" on "go"
    await app.asignal("f", "budget.raise", {"max_usd": 10})
    await app.asignal("f", "go", None)
    state["armed"] = True
    done = await app.aresume("f")
    assert done.status is RunStatus.COMPLETED, done.record.events
    assert done.value == ["echo: stopped", "echo: late"]
    stops = [e for e in done.record.events if e.type == "budget.exceeded"]
    assert len(stops) == 1  # the first drive's, of "stopped"; none of "late"
    assert server.count("POST /v1/chat/completions") == 3
