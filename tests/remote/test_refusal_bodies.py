"""What a refusal's body holds does not decide how the run goes: a server answering
500 with an endless body, a 503 whose body nests too deep, details of the wrong shape
from a tenant of another make. Each is the refusal it is. And a compensate invocation
the tenant answered 'failed' says why. Real loopback servers; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

import tether
from tether import RunStatus
from tether.remote import (
    RemoteInvocationLimitError,
    RemoteRefusedError,
    RemoteVersionError,
    TenantApp,
    handler,
)
from tether.testing import eventually_sync

from ._http import serve
from ._procs import SECRET


def test_a_refusal_body_is_read_no_further_than_its_start(app: tether.App) -> None:
    # it was read whole: a server answering 500 with a body that never ends filled
    # memory until the deadline, and the run was told that no answer came in time
    # (to raise deadline=), not that the tenant answered 500
    held = threading.Event()

    def endless() -> Iterator[bytes]:
        yield b"x" * (2 * 1024 * 1024)
        held.wait()  # the rest never comes

    server, url, sizes = serve(b"HTTP/1.1 500 Internal Server Error", endless())
    try:
        flow = app.remote_workflow("flood", url=url, secret=SECRET, max_invocations=1,
                                   retry_delay=0.01, deadline=5)  # fmt: skip
        with pytest.raises(RemoteInvocationLimitError, match="answered 500: xxx") as raised:
            app.run(flow, workflow_id="flood-1")
    finally:
        held.set()
        server.shutdown()
        server.server_close()
    assert "deadline" not in str(raised.value)
    assert len(sizes) == 1


def test_a_refusal_nested_too_deep_is_still_the_refusal(app: tether.App) -> None:
    # json.loads raised RecursionError, uncaught: a 503 (tried again) failed the run
    # at once with "maximum recursion depth exceeded"
    head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json"
    server, url, sizes = serve(head, b"[" * 100_000)
    try:
        flow = app.remote_workflow("deep", url=url, secret=SECRET, max_invocations=2,
                                   retry_delay=0.01)  # fmt: skip
        with pytest.raises(RemoteInvocationLimitError, match=r"answered 503: \[\[\["):
            app.run(flow, workflow_id="deep-1")
    finally:
        server.shutdown()
        server.server_close()
    assert len(sizes) == 2
    assert app.get_record("deep-1").status is RunStatus.FAILED


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        ("workflow_version_mismatch", {"versions": 5}, RemoteVersionError),
        ("protocol_version_mismatch", {"supported": "1"}, RemoteVersionError),
        ("workflow_not_found", {"workflows": 5}, RemoteRefusedError),
    ],
)
def test_details_of_the_wrong_shape_are_still_the_refusal(
    app: tether.App, code: str, details: dict[str, object], kind: type[RemoteRefusedError]
) -> None:
    # list(5): the run failed with "TypeError: 'int' object is not iterable", and the
    # error's .supported raised it again
    body = json.dumps({"error": {"code": code, "message": "not here", "details": details}})
    server, url, _ = serve(
        b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json", body.encode()
    )
    try:
        flow = app.remote_workflow("odd", url=url, secret=SECRET, version="1")
        with pytest.raises(kind, match=rf"\(409 {code}\): not here") as raised:
            app.run(flow, workflow_id=f"odd-{code}")
    finally:
        server.shutdown()
        server.server_close()
    if isinstance(raised.value, RemoteVersionError):
        assert raised.value.supported == []


class _Switch:
    """The tenant's handler, replaced by a redeployment's between two requests."""

    def __init__(self, tenant: TenantApp) -> None:
        self.inner = handler(tenant)

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        await self.inner(scope, receive, send)  # type: ignore[arg-type]


def test_a_compensate_answered_failed_says_why(app: tether.App) -> None:
    # the run's compensation failed with "the tenant answered 'failed' to compensate"
    # and nothing more: here the tenant's new code takes no input
    before, after = TenantApp(secret=SECRET), TenantApp(secret=SECRET)

    @before.workflow(name="seat", version="1")
    async def seat(wf: tether.Workflow, who: str) -> object:
        await wf.step("reserve", lambda: who, compensate=lambda: None)
        return await wf.wait_for_signal("pay")

    @after.workflow(name="seat", version="1")
    async def seat_now(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("pay")

    switch = _Switch(before)
    flow = app.remote_workflow("seat", url="http://t/", secret=SECRET, version="1",
                               transport=httpx.ASGITransport(app=switch))  # fmt: skip
    assert app.run(flow, "ada", workflow_id="seat-1").status is RunStatus.WAITING
    switch.inner = handler(after)
    app.cancel("seat-1", "left", compensate=True)
    ended = (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
    rec = eventually_sync(lambda: (r := app.get_record("seat-1")).status in ended and r, timeout=60)
    assert rec.status is RunStatus.COMPENSATION_FAILED
    error = rec.steps["compensate:remote.tenant"].error
    assert error is not None
    assert error.message.startswith(
        "the tenant answered 'failed' to compensate: InvalidArgumentError: workflow 'seat' "
        "on the tenant takes no input"
    )


def test_an_aborted_answer_without_a_reason_says_so(app: tether.App) -> None:
    # it read "the tenant stopped: None"
    server, url, _ = serve(b"HTTP/1.1 200 OK", b'{"type": "aborted"}\n')
    try:
        flow = app.remote_workflow("quits", url=url, secret=SECRET, max_invocations=1,
                                   retry_delay=0.01, deadline=5)  # fmt: skip
        with pytest.raises(RemoteInvocationLimitError) as raised:
            app.run(flow, workflow_id="quits-1")
    finally:
        server.shutdown()
        server.server_close()
    assert "the tenant stopped: it gave no reason (see the tenant's log)" in str(raised.value)
    assert "None" not in str(raised.value)


def test_a_page_answered_200_without_a_line_end_is_refused_at_once(app: tether.App) -> None:
    # it was taken for a protocol line cut in two and invoked again up to max_invocations
    # (100 by default, the delay doubling to 30 s: most of an hour to fail)
    server, url, sizes = serve(b"HTTP/1.1 200 OK\r\ncontent-type: text/html", b"<html>hi</html>")
    try:
        flow = app.remote_workflow("page", url=url, secret=SECRET, max_invocations=3,
                                   retry_delay=0.01, deadline=5)  # fmt: skip
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow, workflow_id="page-1")
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.code == "invalid_answer"
    assert "'<html>hi</html>'" in str(raised.value)
    assert len(sizes) == 1


def test_an_empty_200_is_refused_at_once(app: tether.App) -> None:
    # a webhook receiver at the wrong url: "ended its answer without a status", invoked
    # again up to max_invocations (100 by default: about an hour to fail)
    server, url, sizes = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 0", b"")
    try:
        flow = app.remote_workflow("hook", url=url, secret=SECRET, max_invocations=3,
                                   retry_delay=0.01, deadline=5)  # fmt: skip
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow, workflow_id="hook-1")
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.code == "invalid_answer"
    assert str(raised.value).endswith(
        "(200 invalid_answer): it answered 200 with an empty body (content-length: 0), "
        "which no tether tenant sends (a tenant streams its answer): this url is probably "
        "not a tether tenant's (is tether.remote.handler served at it?)"
    )
    assert len(sizes) == 1
    assert app.get_record("hook-1").status is RunStatus.FAILED


def test_a_last_step_line_without_its_newline_is_recorded_and_said_so(app: tether.App) -> None:
    # the line was recorded, then the answer was said to have ended "in the middle of a
    # line", as if it had been cut and lost
    step = b'{"type":"step","step":{"key":"a","name":"a","result":"1"}}'
    server, url, _ = serve(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson", step)
    try:
        flow = app.remote_workflow("last", url=url, secret=SECRET, max_invocations=1,
                                   retry_delay=0.01, deadline=5)  # fmt: skip
        with pytest.raises(RemoteInvocationLimitError) as raised:
            app.run(flow, workflow_id="last-1")
    finally:
        server.shutdown()
        server.server_close()
    assert f"invocation 1: {url} ended its answer after a 'step' line without a status" in str(
        raised.value
    )
    assert app.get_record("last-1").steps["a"].result == 1
