"""A retried command is the same request when its payload holds the same values: a
client that re-serialised the payload (its object's keys in another order) was
refused with `IdempotencyConflictError`, though JSON objects have no order and
`run.create` took the same input so reordered as the same request."""

from __future__ import annotations

import pytest

import tether
from tether import App, Workflow
from tether.kernel import RunResumed


async def test_a_retry_with_its_payload_keys_reordered_replays_the_first_result(
    app: App,
) -> None:
    @app.workflow(name="waiter")
    async def waiter(wf: Workflow) -> object:
        return await wf.wait_for_signal("go")

    await app.arun(waiter, workflow_id="order-A")
    first = {
        "type": "run.resume",
        "kind": "signal",
        "name": "go",
        "workflow_id": "order-A",
        "payload": {"amount": 5, "currency": "EUR", "lines": [{"sku": "x", "qty": 1}]},
        "idempotency_key": "pay-1",
    }
    woke = await app.kernel.adispatch(first)
    assert isinstance(woke, RunResumed) and woke.woken == ["order-A"]
    # the same request as another client sends it: the same values, keys reordered
    retry = {
        **first,
        "payload": {"lines": [{"qty": 1, "sku": "x"}], "currency": "EUR", "amount": 5},
    }
    assert await app.kernel.adispatch(retry) == woke
    # another payload is still another request
    other = {**first, "payload": {"amount": 6, "currency": "EUR", "lines": []}}
    with pytest.raises(tether.IdempotencyConflictError, match=r"different run\.resume command"):
        await app.kernel.adispatch(other)
