"""A batch result line whose custom_id cannot be read (not JSON, or none in it) may
be any request's answer, billed: it is of unknown cost in the result, the call log,
the usage and the budgets, never skipped as free. The official SDKs talk to a real
local server; time is a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from tether import FakeClock, RunStatus, Workflow

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended


def _unreadable(custom_id: str, how: str) -> Any:
    """The line of `custom_id` cut short (not JSON) or without its custom_id."""

    def edit(lines: list[Any]) -> list[Any]:
        out: list[Any] = []
        for x in lines:
            if x["custom_id"] != custom_id:
                out.append(x)
            elif how == "cut":
                out.append('{"custom_id": "' + custom_id[:1])
            else:
                out.append({k: v for k, v in x.items() if k != "custom_id"})
        return out

    return edit


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_unreadable_result_line_is_of_unknown_cost_not_free(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """Before, the line (not JSON) was skipped: request "1" said only "no result", no
    call-log row was written, and the batch cost $0.00003, the third request as $0."""
    app = _app(database_url, clock, server)
    three = _three(app, provider)
    assert (await app.arun(three, workflow_id="u")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_unreadable("1", "cut"))
    done = await _ended(app, clock, "u", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    cost, error, [lost] = done.value
    assert cost is None  # unknown, not $0 for the lost line
    assert "1 of its result lines could not be read, billed at an unknown cost" in error
    assert not lost["ok"] and lost["cost_usd"] is None
    assert "custom_id could not be read" in lost["error"]
    calls = await app.alist_ai_calls("u")
    [row] = [c for c in calls if c.custom_id not in ("0", "2")]
    assert row.custom_id == lost["custom_id"] and row.cost_unknown
    assert row.cost_micro_usd is None and row.billed
    [usage] = await app.ausage(run="u")
    assert (usage.calls, usage.unknown_cost_calls, usage.priced_calls) == (3, 1, 2)
    spend = await app.store.ai_spend("u", None)
    assert (spend.calls, spend.unknown_cost_calls) == (3, 1)
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_result_line_without_its_custom_id_is_billed_at_the_usage_it_tells(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """Its answer tells its usage (10 tokens in, 5 out): it is priced at that, though
    which request it answers is unknown. Before, it was skipped as free ($0.00003)."""
    app = _app(database_url, clock, server)
    three = _three(app, provider)
    assert (await app.arun(three, workflow_id="n")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_unreadable("1", "no custom_id"))
    done = await _ended(app, clock, "n", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    cost, error, [lost] = done.value
    assert cost == 0.000045 and lost["cost_usd"] == 0.000015
    assert "1 of its result lines could not be read" in error
    assert not lost["ok"] and "custom_id could not be read" in lost["error"]
    [usage] = await app.ausage(run="n")
    assert (usage.calls, usage.priced_calls, usage.cost_micro_usd) == (3, 3, 45)
    await app.aclose()


def _three(app: Any, provider: str) -> Any:
    """Workflow "three": a batch of three prompts; its cost, request 1's error, and
    the outcomes not of a request asked."""

    @app.workflow(name="three")
    async def three(wf: Workflow) -> Any:
        res = await wf.ai.batch(MODELS[provider], ["a", "b", "c"], poll_every=60)
        lost = [v.model_dump() for k, v in res.items.items() if k not in ("0", "1", "2")]
        return [res.cost_usd, res.items["1"].error, lost]

    return three
