"""A batch that ended short (failed, expired, cancelled) after some requests completed
raises `ProviderError`; its `batch` holds the outcomes: the completed requests' texts,
usage and cost (as the call log has them), the others not ok with their error. The
workflow that catches it uses the results it paid for. The official SDKs talk to a
real local server; time is a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether import FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended

ENDINGS = [("openai", e) for e in ("expired", "cancelled", "failed")] + [
    ("anthropic", e) for e in ("expired", "cancelled")
]


@pytest.mark.parametrize(("provider", "ending"), ENDINGS)
async def test_the_completed_results_of_a_batch_that_ended_short_reach_the_caller(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str, ending: str
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="short")
    async def short(wf: Workflow) -> dict[str, Any]:
        try:
            await wf.ai.batch(MODELS[provider], ["q0", "q1", "q2"], poll_every=60)
        except ai.ProviderError as exc:
            assert exc.batch is not None
            return {
                "said": str(exc),
                "cost": exc.batch.cost_usd,
                "items": {
                    k: [v.ok, v.text, v.error, v.cost_usd] for k, v in exc.batch.items.items()
                },
            }
        return {}

    try:
        assert (await app.arun(short, workflow_id="s")).status is RunStatus.WAITING
        server.end_batches(ending, completed=2)
        done = await _ended(app, clock, "s", 60)
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        got = done.value
        assert "2 of its 3 requests completed" in got["said"]
        calls = {c.custom_id: c for c in await app.alist_ai_calls("s")}
        for cid in ("0", "1"):
            ok, text, error, cost = got["items"][cid]
            assert ok and text == json.loads(calls[cid].response or "{}")["text"] and error is None
            assert cost is not None and cost * 1e6 == pytest.approx(calls[cid].cost_micro_usd)
        ok, text, error, cost = got["items"]["2"]
        assert not ok and text is None and error and calls["2"].error
        [usage] = await app.ausage(run="s")
        assert got["cost"] * 1e6 == pytest.approx(usage.cost_micro_usd)
    finally:
        await app.aclose()
