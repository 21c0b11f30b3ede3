"""A command's idempotency key names one request: the same key with another request
is refused, not answered with the first request's result."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlsplit

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.kernel import RunCancel, RunResume, RunResumed


async def test_a_key_reused_for_another_request_is_refused(app: App) -> None:
    @app.workflow(name="waiter")
    async def waiter(wf: Workflow) -> object:
        return await wf.wait_for_signal("go")

    for wid in ("order-A", "order-B"):
        await app.arun(waiter, workflow_id=wid)
    first = RunResume(
        kind="signal", name="go", workflow_id="order-A", payload={"ok": 1}, idempotency_key="r1"
    )
    woke = await app.kernel.adispatch(first)
    assert isinstance(woke, RunResumed) and woke.woken == ["order-A"]
    assert await app.kernel.adispatch(first) == woke  # the same request: the first result
    # the same key meant for order-B: before, it answered "woke order-A" and did nothing
    other = first.model_copy(update={"workflow_id": "order-B", "payload": {"ok": 2}})
    with pytest.raises(tether.IdempotencyConflictError, match=r"different run\.resume command"):
        await app.kernel.adispatch(other)
    assert (await app.aget_run("order-B")).status is RunStatus.WAITING  # nothing was lost
    # a key names a request of one command type: a cancel may use it too
    cancelled = await app.kernel.adispatch(RunCancel(workflow_id="order-B", idempotency_key="r1"))
    assert cancelled.cancelled == ["order-B"]  # type: ignore[union-attr]


async def test_a_result_kept_before_requests_were_kept_still_replays(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.workflow(name="waiter")
    async def waiter(wf: Workflow) -> object:
        return await wf.wait_for_signal("go")

    try:
        await app.arun(waiter, workflow_id="w1")
        cmd = RunResume(kind="signal", name="go", workflow_id="w1", idempotency_key="old")
        woke = await app.kernel.adispatch(cmd)
        path = urlsplit(sqlite_url).path
        with sqlite3.connect(path) as conn:  # as an earlier release wrote it: no request
            (text,) = conn.execute("SELECT result FROM idempotency WHERE key = 'old'").fetchone()
            kept = json.loads(text)
            kept.pop("$request")
            conn.execute("UPDATE idempotency SET result = ? WHERE key = 'old'", (json.dumps(kept),))
        assert await app.kernel.adispatch(cmd) == woke
    finally:
        await app.aclose()
