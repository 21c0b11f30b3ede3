"""A cancel with compensation whose invocation goes unanswered is tried again, as the
run's own invocations are. The tenant sits behind a proxy (an ASGI app) that answers
503 while it is "down"; the orchestrator is an App on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

import tether
from tether import RunStatus
from tether.remote import RemoteWorkflowError, TenantApp, handler
from tether.testing import eventually_sync

SECRET = "s"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]


class _Proxy:
    """Answers the first `down` POSTs with 503 (the tenant restarting behind it), then
    passes every request to the tenant's handler."""

    def __init__(self, tenant: TenantApp, down: int) -> None:
        self.inner, self.down = handler(tenant), down

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.down > 0:
            self.down -= 1
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"restarting"})
            return
        await self.inner(scope, receive, send)


def _booking(tenant: TenantApp, undone: list[str]) -> None:
    @tenant.workflow(name="booking", version="1")
    async def booking(wf: tether.Workflow) -> object:
        await wf.step("reserve", lambda: "seat-1", compensate=undone.append)
        return await wf.wait_for_signal("pay")


def test_an_unanswered_compensate_invocation_is_tried_again(app: tether.App) -> None:
    # it was tried once: a tenant down for a moment when the run was cancelled left it
    # compensation_failed, the seat it reserved never released
    tenant, undone = TenantApp(secret=SECRET), list[str]()
    _booking(tenant, undone)
    proxy = _Proxy(tenant, down=0)
    flow = app.remote_workflow("booking", url="http://t/", secret=SECRET, version="1",
                               retry_delay=0.01, transport=httpx.ASGITransport(app=proxy))  # fmt: skip
    assert app.run(flow, workflow_id="b-1").status is RunStatus.WAITING
    proxy.down = 2
    app.cancel("b-1", "customer left", compensate=True)
    ended = (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
    rec = eventually_sync(lambda: (r := app.get_record("b-1")).status in ended and r, timeout=60)
    assert rec.status is RunStatus.COMPENSATED and undone == ["seat-1"]
    assert proxy.down == 0
    unanswered = [e.message for e in rec.events if e.type == "remote.unanswered"]
    assert len(unanswered) == 2 and all("answered 503: restarting" in m for m in unanswered)


def test_a_tenant_down_past_max_invocations_tries_ends_compensation_failed(
    app: tether.App,
) -> None:
    # the retries are bounded as the run's invocations are: max_invocations tries
    tenant, undone = TenantApp(secret=SECRET), list[str]()
    _booking(tenant, undone)
    proxy = _Proxy(tenant, down=0)
    flow = app.remote_workflow("booking", url="http://t/", secret=SECRET, version="1",
                               retry_delay=0.01, max_invocations=3,
                               transport=httpx.ASGITransport(app=proxy))  # fmt: skip
    assert app.run(flow, workflow_id="b-2").status is RunStatus.WAITING
    proxy.down = 10
    app.cancel("b-2", compensate=True)
    ended = (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
    rec = eventually_sync(lambda: (r := app.get_record("b-2")).status in ended and r, timeout=60)
    assert rec.status is RunStatus.COMPENSATION_FAILED and undone == []
    assert proxy.down == 10 - 3
    # the tenant back, `retry_compensations` sends the compensate invocation again
    proxy.down = 0
    assert app.retry_compensations("b-2").status is RunStatus.COMPENSATED
    assert undone == ["seat-1"]


class _Limited:
    """Answers the first POST 429 with a Retry-After (a rate limit in front of the
    tenant), then passes every request to the tenant's handler."""

    def __init__(self, tenant: TenantApp, retry_after: str) -> None:
        self.inner, self.retry_after, self.refused = handler(tenant), retry_after, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.refused:
            self.refused += 1
            headers = [(b"retry-after", self.retry_after.encode())]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": b"slow down"})
            return
        await self.inner(scope, receive, send)


def test_a_429s_retry_after_is_waited_before_the_next_invocation(database_url: str) -> None:
    """A rate limit's Retry-After was ignored: the next invocation went at the
    back-off's own pace (0.01 s here), and met the limit again."""
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="quick", version="1")
    async def quick(wf: tether.Workflow) -> str:
        return str(await wf.step("one", lambda: "done"))

    clock = tether.FakeClock()
    app = tether.App(database_url, inline_wait=0, clock=clock)
    try:
        limited = _Limited(tenant, retry_after="40")
        flow = app.remote_workflow("quick", url="http://t/", secret=SECRET, version="1",
                                   retry_delay=0.01, transport=httpx.ASGITransport(app=limited))  # fmt: skip
        assert app.run(flow, workflow_id="q-1").value == "done"
        assert limited.refused == 1 and clock.slept == [40.0]
    finally:
        app.close()


def test_a_remote_run_whose_undo_failed_on_the_tenant_is_retried(app: tether.App) -> None:
    """The run failed on the tenant, whose compensation failed there too (its refund
    service down): once it is back, `retry_compensations` has the tenant undo it."""
    tenant, undone, up = TenantApp(secret=SECRET), list[str](), [False]

    def release(seat: str) -> None:
        if not up[0]:
            raise ConnectionError("seat service unavailable")
        undone.append(seat)

    def pay() -> None:
        raise ValueError("payment failed")

    @tenant.workflow(name="booking", version="1")
    async def booking(wf: tether.Workflow) -> None:
        await wf.step("reserve", lambda: "seat-1", compensate=release)
        await wf.step("pay", pay)

    flow = app.remote_workflow("booking", url="http://t/", secret=SECRET, version="1",
                               retry_delay=0.01, transport=httpx.ASGITransport(app=handler(tenant)))  # fmt: skip
    with contextlib.suppress(RemoteWorkflowError):
        app.run(flow, workflow_id="f-1")
    assert app.get_run("f-1").status is RunStatus.COMPENSATION_FAILED and undone == []
    up[0] = True
    assert app.retry_compensations("f-1").status is RunStatus.COMPENSATED
    assert undone == ["seat-1"]
