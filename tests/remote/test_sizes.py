"""Values too large for an invocation: every invocation carries the run's input and
the results of all its completed steps, and a tenant reads at most `MAX_BODY` bytes.
Such a run fails at once, saying which value, how large, the limit and the fix, with
what it recorded before kept, and is not invoked again."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest

import tether
from tether import RunStatus, StepStatus
from tether.remote import (
    Answer,
    Invocation,
    Journal,
    JournalStep,
    Line,
    RemoteTooLargeError,
    RemoteWorkflowError,
    TenantApp,
    Waitpoint,
    handler,
)
from tether.remote._call import MAX_LINE, encode
from tether.remote._handler import MAX_BODY

from ._http import serve
from ._procs import SECRET, start_tenant


def _invocations(app: tether.App, wid: str) -> int:
    return [e.type for e in app.get_record(wid).events].count("remote.invoked")


def _says_how_to_fix(message: str) -> None:
    assert f"{MAX_BODY:,} bytes" in message  # the limit
    assert "blob store" in message and "reference" in message  # the fix


def test_a_step_result_over_the_limit_fails_the_run_on_the_tenant(tmp_path: Path) -> None:
    # the tenant sent the step and the orchestrator recorded it; the run parked, and
    # its next invocation (carrying the step) was refused by the tenant with 413 "the
    # request is over 33554432 bytes": no step, no run, no fix, and only once resumed
    tenant = start_tenant(tmp_path)
    try:
        with tether.App(f"sqlite:///{tmp_path}/orch.db") as app:
            flow = app.remote_workflow("hoard", url=tenant.url, secret=SECRET, version="1",
                                       max_invocations=3, retry_delay=0.01)  # fmt: skip
            with pytest.raises(RemoteWorkflowError) as raised:
                app.run(flow, MAX_BODY, workflow_id="h-1")
            rec = app.get_record("h-1")
            invocations = _invocations(app, "h-1")
    finally:
        tenant.stop()
    assert raised.value.error_type == "RemoteTooLargeError"
    message = str(raised.value)
    assert "step 'big' of run 'h-1' returned" in message and f"{MAX_BODY + 2:,}" in message
    _says_how_to_fix(message)
    assert rec.status is RunStatus.FAILED
    assert {k: s.status for k, s in rec.steps.items()} == {
        "remote.tenant": StepStatus.COMPLETED,
        "small": StepStatus.COMPLETED,  # recorded before it: kept
        "big": StepStatus.FAILED,
    }
    assert rec.steps["big"].result is None  # never sent, never stored
    assert invocations == 1
    assert tenant.side("h-1") == ["small", "big"]  # failed for good: not run again


def test_steps_that_together_outgrow_the_limit_fail_at_the_one_that_does(
    app: tether.App,
) -> None:
    tenant = TenantApp(secret=SECRET)
    half = "y" * (MAX_BODY // 2)

    @tenant.workflow(name="halves")
    async def halves(wf: tether.Workflow) -> str:
        await wf.step("one", lambda: half)
        await wf.step("two", lambda: half)  # with "one", over the limit
        return "done"

    flow = app.remote_workflow("halves", url="http://t/", secret=SECRET, max_invocations=2,
                               transport=httpx.ASGITransport(handler(tenant)))  # fmt: skip
    with pytest.raises(RemoteWorkflowError, match="step 'two' of run 'hv-1'") as raised:
        app.run(flow, workflow_id="hv-1")
    assert raised.value.error_type == "RemoteTooLargeError"
    _says_how_to_fix(str(raised.value))
    rec = app.get_record("hv-1")
    assert rec.status is RunStatus.FAILED
    assert rec.steps["one"].status is StepStatus.COMPLETED
    assert rec.steps["one"].result == half  # what was recorded before stays
    assert rec.steps["two"].status is StepStatus.FAILED
    assert _invocations(app, "hv-1") == 1


def test_an_input_over_the_limit_fails_the_run_before_the_tenant_is_called(
    app: tether.App,
) -> None:
    # the orchestrator sent it, the tenant answered 413 "the request is over 33554432
    # bytes", and the run failed with RemoteRefusedError naming neither it nor why
    tenant = TenantApp(secret=SECRET)
    ran: list[int] = []

    @tenant.workflow(name="measure")
    async def measure(wf: tether.Workflow, text: str) -> int:
        ran.append(len(text))
        return len(text)

    flow = app.remote_workflow("measure", url="http://t/", secret=SECRET, max_invocations=2,
                               transport=httpx.ASGITransport(handler(tenant)))  # fmt: skip
    with pytest.raises(RemoteTooLargeError) as raised:
        app.run(flow, "z" * MAX_BODY, workflow_id="in-1")
    message = str(raised.value)
    assert "invocation 1 of run 'in-1' (largest: its input" in message
    assert f"its input {MAX_BODY + 2:,} characters)" in message  # the JSON text: quoted
    _says_how_to_fix(message)
    assert raised.value.limit == MAX_BODY and raised.value.size is not None
    assert raised.value.size > MAX_BODY
    assert ran == []
    rec = app.get_record("in-1")
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None and rec.last_error.type == "RemoteTooLargeError"
    assert _invocations(app, "in-1") == 0  # none was sent


def test_a_journal_over_the_limit_is_not_sent_again(app: tether.App) -> None:
    # a tenant that does not count (another release) sent a step the next invocation
    # cannot carry: it was sent anyway, answered 413 by a tenant of this release, and
    # here (the same answer again) invoked until the cap
    big = '"' + "b" * MAX_BODY + '"'  # a JSON string: its result as recorded
    step = Line(type="step", step=JournalStep(key="big", name="big", result=big))
    waitpoint = Waitpoint(key="go", kind="signal", name="go")
    waiting = Line(type="answer", answer=Answer(status="waiting", waitpoints=[waitpoint]))
    lines = b"".join(
        line.model_dump_json(exclude_none=True).encode() + b"\n" for line in (step, waiting)
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson"
    server, url, sizes = serve(head, lines)
    try:
        flow = app.remote_workflow("old", url=url, secret=SECRET, max_invocations=4)
        assert app.run(flow, workflow_id="old-1").status is RunStatus.WAITING
        assert app.signal("old-1", "go")
        with pytest.raises(RemoteTooLargeError) as raised:
            app.run(flow, workflow_id="old-1")
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert f"invocation 2 of run 'old-1' (largest: step 'big' {len(big):,} characters)" in message
    _says_how_to_fix(message)
    assert len(sizes) == 1  # the second invocation was not sent
    rec = app.get_record("old-1")
    assert rec.status is RunStatus.FAILED
    assert rec.steps["big"].status is StepStatus.COMPLETED  # recorded: kept


def test_a_proxy_refusing_the_invocation_as_too_large_says_so(app: tether.App) -> None:
    # nginx's default limit is 1 MB: its 413 page was reported as a refusal by the
    # tenant ("http_error: <html>...") saying nothing of the size or what to do
    page = b"<html><body><h1>413 Request Entity Too Large</h1></body></html>"
    head = b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-type: text/html"
    server, url, sizes = serve(head, page)
    try:
        flow = app.remote_workflow("proxied", url=url, secret=SECRET, max_invocations=3)
        with pytest.raises(RemoteTooLargeError) as raised:
            app.run(flow, "p" * 2_000_000, workflow_id="px-1")
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert (
        f"(or a proxy in front of it) refused invocation 1 of run 'px-1', {sizes[0]:,} bytes"
        in message
    )
    assert "413 Request Entity Too Large" in message and "raise the proxy's limit" in message
    _says_how_to_fix(message)
    assert len(sizes) == 1  # not retried
    assert app.get_record("px-1").status is RunStatus.FAILED


def test_a_line_without_end_is_not_read_past_the_longest_line(app: tether.App) -> None:
    # bytes without a line end were read into memory until the deadline: 600 MB in 4 s
    # from a loopback tenant, the orchestrator's process (and its other runs) at risk
    start = b'{"type":"step","step":{"key":"flood","name":"flood","result":"\\"'
    flood = (b"f" * 1024 * 1024 for _ in range(MAX_LINE // (1024 * 1024) + 8))
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson"
    server, url, sizes = serve(head, itertools.chain([start], flood))
    try:
        flow = app.remote_workflow("flood", url=url, secret=SECRET, deadline=30,
                                   max_invocations=2)  # fmt: skip
        with pytest.raises(RemoteTooLargeError) as raised:
            app.run(flow, workflow_id="fl-1")
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert f"invocation 1 of run 'fl-1' is over {MAX_LINE:,} bytes" in message
    assert 'it begins \'{"type":"step","step":{"key":"flood"' in message
    assert raised.value.limit == MAX_LINE
    assert len(sizes) == 1  # not invoked again
    rec = app.get_record("fl-1")
    assert rec.status is RunStatus.FAILED and list(rec.steps) == ["remote.tenant"]


def test_a_journal_of_many_small_steps_is_named_as_such() -> None:
    # no one part is large: the message named none ("largest: ")
    steps = [JournalStep(key=f"s#{i}", name="s", result='"' + "r" * 3998 + '"')
             for i in range(9000)]  # fmt: skip
    inv = Invocation(protocol=1, run_id="many-1", workflow="w", invocation=7,
                     journal=Journal(steps=steps), deadline=0)  # fmt: skip
    with pytest.raises(RemoteTooLargeError) as raised:
        encode(inv)
    message = str(raised.value)
    assert "invocation 7 of run 'many-1' (the results of its 9,000 steps: 36,000,000 " in message
    _says_how_to_fix(message)
