"""A batch whose results file is not one line per request: a request's line left
out, or a line repeated. The official SDKs talk to a real local server; time is a
fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from tether import FakeClock, RunStatus, Workflow

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended


def _without(custom_id: str) -> Any:
    return lambda lines: [x for x in lines if x["custom_id"] != custom_id]


def _repeating(custom_id: str) -> Any:
    return lambda lines: lines + [x for x in lines if x["custom_id"] == custom_id]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_request_the_results_hold_no_line_for_is_an_outcome_that_says_so(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """Before, the run completed with `items` missing the request: the workflow's
    ``res.items["1"]`` raised KeyError, though it asked for it and the batch ended."""
    app = _app(database_url, clock, server)

    @app.workflow(name="three")
    async def three(wf: Workflow) -> Any:
        res = await wf.ai.batch(MODELS[provider], ["a", "b", "c"], poll_every=60)
        return [[k, res.items[k].ok, res.items[k].error] for k in ("0", "1", "2")]

    assert (await app.arun(three, workflow_id="m")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_without("1"))
    done = await _ended(app, clock, "m", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    (_, ok0, _), (_, ok1, error), (_, ok2, _) = done.value
    assert (ok0, ok1, ok2) == (True, False, True)
    assert "ended with no result for this request; submit it again" in error
    calls = await app.alist_ai_calls("m")
    assert sorted(c.custom_id or "" for c in calls) == ["0", "2"]  # nothing told of "1"
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_result_line_repeated_counts_once_in_the_batch_result(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """Before, the call log kept the repeated line once ($0.000045 for the three
    requests) but the `BatchResult` the run got summed it twice: $0.00006, 40 tokens in."""
    app = _app(database_url, clock, server)

    @app.workflow(name="three")
    async def three(wf: Workflow) -> Any:
        res = await wf.ai.batch(MODELS[provider], ["a", "b", "c"], poll_every=60)
        return [res.cost_usd, res.usage.input_tokens, len(res.items)]

    assert (await app.arun(three, workflow_id="d")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_repeating("0"))
    done = await _ended(app, clock, "d", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    # 10 tokens in at $1/M, 5 out at $4/M: 30 micro-USD, half of it in a batch, 3 times
    assert done.value == [0.000045, 30, 3]
    usage = done.record.usage
    assert usage is not None and usage.total.cost_micro_usd == 45
    assert usage.total.input_tokens == 30
    await app.aclose()
