"""The protocol's edges, in one process: the tenant's handler reached through an
httpx transport (no network), the orchestrator an App on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tether import RunStatus
from tether.kernel import sign
from tether.remote import (
    SUPPORTED_PROTOCOLS,
    RemoteVersionError,
    TenantApp,
    handler,
)
from tether.store import NewEvent
from tether.testing import eventually_sync

SECRET = "s"


def _post(tenant: TenantApp, payload: dict[str, Any], secret: str = SECRET) -> httpx.Response:
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(secret, ts, body)}
    transport = httpx.ASGITransport(app=handler(tenant))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://tenant/", content=body, headers=headers)

    return asyncio.run(go())


def _invocation(**changes: Any) -> dict[str, Any]:
    return {
        "protocol": 1,
        "run_id": "r",
        "workflow": "echo",
        "version": "1",
        "invocation": 1,
        "input": '"hi"',
        "journal": {},
        "deadline": time.time() + 30,
    } | changes


@pytest.fixture
def tenant() -> TenantApp:
    t = TenantApp(secret=SECRET)

    @t.workflow(name="echo", version="1", compatible=["0"])
    async def echo(wf: tether.Workflow, text: str) -> str:
        return await wf.step("echo", lambda: text)

    return t


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"protocol": 2}, 426, "protocol_version_mismatch"),
        ({"workflow": "nope"}, 404, "workflow_not_found"),
        ({"version": "9"}, 409, "workflow_version_mismatch"),
        ({"deadline": time.time() - 1}, 408, "deadline_exceeded"),
        ({"invocation": 0}, 400, "invalid_request"),
        # JSON parses these, and Python took them: NaN or Infinity never cut the body
        # off, and true was served as protocol 1
        ({"deadline": float("nan")}, 400, "invalid_request"),
        ({"deadline": float("inf")}, 400, "invalid_request"),
        ({"protocol": True}, 400, "invalid_request"),
    ],
)
def test_the_tenant_refuses_what_it_cannot_serve(
    tenant: TenantApp, changes: dict[str, Any], status: int, code: str
) -> None:
    answer = _post(tenant, _invocation(**changes))
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    details = answer.json()["error"]["details"]
    if code == "protocol_version_mismatch":
        assert details == {"supported": list(SUPPORTED_PROTOCOLS)}
    if code == "workflow_version_mismatch":
        assert details == {"versions": ["1", "0"]}
    if status == 400:
        field = "deadline" if "deadline" in changes else next(iter(changes))
        assert field in answer.json()["error"]["message"]


def test_a_deadline_passed_on_arrival_says_by_how_much(tenant: TenantApp) -> None:
    # "the invocation's deadline has passed": a tenant whose clock runs ahead refused
    # every invocation so, and nothing pointed at the clocks
    answer = _post(tenant, _invocation(deadline=time.time() - 60))
    assert answer.status_code == 408
    message = answer.json()["error"]["message"]
    assert "deadline passed 6" in message and "s before it arrived here" in message
    assert "clock is ahead of the orchestrator's" in message


def test_a_wrong_secret_is_refused(tenant: TenantApp) -> None:
    answer = _post(tenant, _invocation(), secret="other")
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "bad_signature")


def test_an_invocation_streams_each_step_then_the_answer(tenant: TenantApp) -> None:
    answer = _post(tenant, _invocation())
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["type"] for line in lines] == ["step", "answer"]
    assert lines[0]["step"] == {"key": "echo", "name": "echo", "result": '"hi"', "attempts": 1}
    assert lines[1]["answer"]["status"] == "completed"
    assert lines[1]["answer"]["journal"]["steps"] == []  # its line carried it: not again


def test_a_protocol_version_mismatch_fails_the_run_with_the_versions_supported(
    app: tether.App,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        error = {"code": "protocol_version_mismatch", "message": "protocol 1 is not spoken here",
                 "details": {"supported": [2, 3]}}  # fmt: skip
        return httpx.Response(426, json={"error": error})

    flow = app.remote_workflow(
        "far", url="http://tenant/", secret=SECRET, transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(RemoteVersionError) as raised:
        app.run(flow, workflow_id="far-1")
    assert raised.value.supported == [2, 3]
    assert "426 protocol_version_mismatch" in str(raised.value)
    assert app.get_record("far-1").status is RunStatus.FAILED


def test_compensations_run_on_the_tenant_and_the_run_ends_compensated(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)
    undone: list[str] = []

    @tenant.workflow(name="book")
    async def book(wf: tether.Workflow) -> None:
        await wf.step("reserve", lambda: "seat-1", compensate=lambda seat: undone.append(seat))
        await wf.step("pay", _decline)

    flow = app.remote_workflow(
        "book", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    with pytest.raises(tether.remote.RemoteWorkflowError, match="card declined"):
        app.run(flow, workflow_id="b-1")
    rec = app.get_record("b-1")
    assert rec.status is RunStatus.COMPENSATED
    assert undone == ["seat-1"]
    assert "reserve" in rec.steps and "compensate:reserve" in rec.steps


def _decline() -> None:
    raise RuntimeError("card declined")


def test_state_and_events_written_on_the_tenant_are_recorded(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="noted")
    async def noted(wf: tether.Workflow) -> int:
        await wf.update_state({"phase": "done"})
        await wf.append_event("note", "hello", {"n": 1})
        return 1

    flow = app.remote_workflow(
        "noted", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    assert app.run(flow, workflow_id="n-1").value == 1
    rec = app.get_record("n-1")
    assert rec.state == {"phase": "done"}
    assert [(e.type, e.message) for e in rec.events if e.type == "note"] == [("note", "hello")]


def test_what_only_the_orchestrator_has_is_refused_on_the_tenant(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="locks")
    async def locks(wf: tether.Workflow) -> None:
        await wf.heartbeat("me")

    flow = app.remote_workflow(
        "locks", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    with pytest.raises(tether.remote.RemoteWorkflowError, match="cannot use 'record_heartbeat'"):
        app.run(flow)


def test_the_answer_of_a_superseded_invocation_is_discarded(app: tether.App) -> None:
    entered, release = threading.Event(), threading.Event()
    tenant = TenantApp(secret=SECRET)

    def held() -> int:
        entered.set()
        release.wait(30)
        return 2

    @tenant.workflow(name="fenced")
    async def fenced(wf: tether.Workflow) -> int:
        await wf.step("first", lambda: 1)
        return await wf.step("held", held)

    flow = app.remote_workflow(
        "fenced", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    with ThreadPoolExecutor(1) as pool:
        drive = pool.submit(app.run, flow, workflow_id="f-1")
        assert entered.wait(30)
        # the lines stream in as sent: taken over once it recorded the start of "held"
        eventually_sync(lambda: "held" in app.get_record("f-1").steps, timeout=60)
        taken = app.run_sync(
            app.store.claim_run(
                "f-1", "another-owner", app.clock.now(), NewEvent("workflow.running"), force=True
            )
        )
        release.set()
        with pytest.raises(tether.StaleOwnerError):
            drive.result(timeout=30)
    assert taken.owner == "another-owner"
    # what came while the drive held the run is recorded, the completion that came
    # after it was superseded is refused, not recorded
    steps = app.get_record("f-1").steps
    assert list(steps) == ["remote.tenant", "first", "held"]
    assert steps["first"].status is tether.StepStatus.COMPLETED
    assert steps["held"].status is tether.StepStatus.RUNNING and steps["held"].result is None
    run = app.run_sync(app.store.get_run("f-1"))
    assert run is not None and run.owner == "another-owner" and run.status is RunStatus.RUNNING


def test_a_parked_remote_run_is_cancelled_like_any_other(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="parks")
    async def parks(wf: tether.Workflow) -> object:
        await wf.step("before", lambda: 1)
        return await wf.wait_for_signal("go")

    flow = app.remote_workflow(
        "parks", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    assert app.run(flow, workflow_id="p-1").status is RunStatus.WAITING
    assert app.cancel("p-1") == ["p-1"]
    rec = app.get_record("p-1")
    assert rec.status is RunStatus.CANCELLED and list(rec.steps) == ["remote.tenant", "before"]
    assert [w.status.value for w in app.list_waits("p-1")] == ["cancelled"]


def test_every_waitpoint_is_registered_before_the_run_parks(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="both")
    async def both(wf: tether.Workflow) -> list[object]:
        async def wait(name: str) -> object:
            return await wf.wait_for_signal(name)

        return list(await asyncio.gather(wait("a"), wait("b")))

    flow = app.remote_workflow(
        "both", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    assert app.run(flow, workflow_id="w-1").status is RunStatus.WAITING
    assert sorted(w.key for w in app.list_waits("w-1")) == ["signal:a#1", "signal:b#1"]
    app.signal("w-1", "b", 2)
    app.signal("w-1", "a", 1)
    assert app.run(flow, workflow_id="w-1").value == [1, 2]


def test_timers_on_the_tenant_are_durable_timers_under_its_keys(tmp_path: Path) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="naps")
    async def naps(wf: tether.Workflow) -> str:
        await wf.sleep(0.01)
        await wf.sleep(0.01)
        return "up"

    with tether.App(f"sqlite:///{tmp_path}/t.db") as app:  # waits out short timers inline
        flow = app.remote_workflow(
            "naps", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
        )
        assert app.run(flow, workflow_id="s-1").value == "up"
        waits = app.list_waits("s-1")
    assert [(w.key, w.kind.value, w.status.value) for w in waits] == [
        ("sleep#1", "timer", "resolved"),
        ("sleep#2", "timer", "resolved"),
    ]


def _booking(tenant: TenantApp, undone: list[str], *, fail: bool = False) -> None:
    def release(seat: str) -> None:
        if fail:
            raise RuntimeError("the seat is gone")
        undone.append(seat)

    @tenant.workflow(name="booking")
    async def booking(wf: tether.Workflow) -> object:
        await wf.step("reserve", lambda: "seat-1", compensate=release)
        await wf.step("hold", lambda: "held")  # no compensation: nothing to undo
        return await wf.wait_for_signal("pay")


@pytest.mark.parametrize("fail", [False, True])
def test_a_cancel_with_compensation_asks_the_tenant_to_compensate(
    app: tether.App, fail: bool
) -> None:
    tenant = TenantApp(secret=SECRET)
    undone: list[str] = []
    _booking(tenant, undone, fail=fail)
    flow = app.remote_workflow(
        "booking", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    assert app.run(flow, workflow_id="c-1").status is RunStatus.WAITING
    app.cancel("c-1", "changed my mind", compensate=True)
    ended = (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
    rec = eventually_sync(lambda: (r := app.get_record("c-1")).status in ended and r, timeout=60)
    if fail:
        assert rec.status is RunStatus.COMPENSATION_FAILED and undone == []
    else:
        assert rec.status is RunStatus.COMPENSATED and undone == ["seat-1"]
        assert rec.steps["compensate:remote.tenant"].status.value == "completed"
    # the body was not driven on: no step ran past the wait
    assert list(rec.steps)[:3] == ["remote.tenant", "reserve", "hold"]


def test_a_cancel_without_compensation_does_not_call_the_tenant(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)
    undone: list[str] = []
    _booking(tenant, undone)
    calls: list[str] = []
    inner = httpx.ASGITransport(handler(tenant))

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(json.loads(request.content).get("mode", "run"))
            return await inner.handle_async_request(request)

    flow = app.remote_workflow("booking", url="http://t/", secret=SECRET, transport=Counting())
    app.run(flow, workflow_id="c-2")
    app.cancel("c-2")
    assert calls == ["run"] and undone == []
    assert app.get_record("c-2").status is RunStatus.CANCELLED


def test_a_token_the_tenant_creates_and_waits_on_is_completed_by_its_id(app: tether.App) -> None:
    """The run parks on the token's real id (before: on the id "None", so completing
    the token failed and a second such run in the database hit a unique constraint)."""
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="approve")
    async def approve(wf: tether.Workflow) -> object:
        token = await wf.create_token()
        await wf.step("send", lambda: token)  # the token goes out, e.g. in an email
        return await wf.wait_for_token(token)

    flow = app.remote_workflow(
        "approve", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    tokens = []
    for wid in ("t-1", "t-2"):
        assert app.run(flow, workflow_id=wid).status is RunStatus.WAITING
        tokens.append(app.get_record(wid).steps["send"].result)
    assert len(set(tokens)) == 2 and all(isinstance(t, str) and len(t) == 32 for t in tokens)
    for wid, token in zip(("t-1", "t-2"), tokens, strict=True):
        assert app.complete_token(token, {"ok": wid}) == wid
        assert app.run(flow, workflow_id=wid).value == {"ok": wid}


def test_an_input_the_tenant_cannot_use_fails_the_run_at_once(app: tether.App) -> None:
    # the tenant answered "aborted" (its own fault, retried), so the run was invoked up
    # to max_invocations times over some 47 minutes before it failed
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="greet")
    async def greet(wf: tether.Workflow, who: str) -> str:
        return f"hello {who}"

    flow = app.remote_workflow(
        "greet", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    with pytest.raises(tether.remote.RemoteWorkflowError, match="does not fit workflow 'greet'"):
        app.run(flow, {"who": "ada"}, workflow_id="g-1")
    rec = app.get_record("g-1")
    assert rec.status is RunStatus.FAILED
    assert [e.type for e in rec.events].count("remote.invoked") == 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(
    tenant: TenantApp, declared: bool
) -> None:
    # the handler read any body whole into memory (unsigned, from anyone) before its
    # size check: 300 MB took the tenant from 50 to 394 MB
    from tether.remote._handler import MAX_BODY

    chunk, sent = b"x" * (1024 * 1024), [0]

    async def body() -> Any:
        while sent[0] * len(chunk) <= 2 * MAX_BODY:
            sent[0] += 1
            yield chunk

    headers = {"Content-Length": str(3 * MAX_BODY)} if declared else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=handler(tenant))
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://tenant/", content=body(), headers=headers)

    answer = asyncio.run(go())
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"
    assert sent[0] * len(chunk) <= MAX_BODY + len(chunk)  # read no further than the limit
    # it said "the request is over 33554432 bytes", and nothing of what to do
    message = answer.json()["error"]["message"]
    size = f"{3 * MAX_BODY} bytes, " if declared else ""
    assert f"the invocation is {size}over the {MAX_BODY} bytes this tenant reads" in message
    assert "blob store" in message and "reference" in message
    assert answer.json()["error"]["details"] == {"limit": MAX_BODY}


def _served(app: tether.App, tenant: TenantApp, name: str, **options: Any) -> Any:
    """`name` on `app`, served by `tenant`'s handler through the ASGI transport."""
    transport = options.pop("transport", None) or httpx.ASGITransport(handler(tenant))
    return app.remote_workflow(name, url="http://t/", secret=SECRET, transport=transport, **options)


def test_a_step_that_failed_is_not_run_again_as_in_process(app: tether.App) -> None:
    # the failure was neither recorded nor in the journal: every later invocation ran
    # the step again (its side effect with it)
    charges: list[str] = []

    async def pay(wf: tether.Workflow) -> list[str]:
        def charge() -> str:
            charges.append("charged")
            raise PermissionError("card declined")

        try:
            await wf.step("charge", charge)
            seen = "charged"
        except Exception as exc:
            seen = f"{type(exc).__name__}: {exc}"
        await wf.wait_for_signal("next")
        return [seen]

    tenant = TenantApp(secret=SECRET)
    tenant.workflow(name="pay")(pay)
    flow = _served(app, tenant, "pay")
    local = app.workflow(name="pay-here")(pay)
    for fn, wid in ((flow, "pay-1"), (local, "pay-2")):
        assert app.run(fn, workflow_id=wid).status is RunStatus.WAITING
        app.signal(wid, "next")
    remote, here = app.run(flow, workflow_id="pay-1"), app.run(local, workflow_id="pay-2")
    assert charges == ["charged", "charged"]  # once per run
    assert remote.value == here.value  # the replay raised the recorded error, as in-process
    assert remote.value == ["PermissionError: card declined"]
    step = app.get_record("pay-1").steps["charge"]
    assert step.status.value == "failed" and step.attempts == 1
    assert step.error is not None and step.error.type == "PermissionError"


def test_the_run_state_goes_to_the_tenant(app: tether.App) -> None:
    # the tenant started every invocation from a state of None: update_state(fn) lost
    # the run's initial_state
    async def count(wf: tether.Workflow) -> Any:
        seen = wf.state
        await wf.update_state(lambda s: {**s, "n": s["n"] + 1})
        return {"seen": seen, "now": wf.state}

    tenant = TenantApp(secret=SECRET)
    tenant.workflow(name="count")(count)
    local = app.workflow(name="count-here")(count)
    initial = {"n": 10, "owner": "ada"}
    expected = {"seen": initial, "now": {"n": 11, "owner": "ada"}}
    for fn, wid in ((_served(app, tenant, "count"), "st-1"), (local, "st-2")):
        assert app.run(fn, workflow_id=wid, initial_state=initial).value == expected
        assert app.get_record(wid).state == {"n": 11, "owner": "ada"}


def test_a_resumed_remote_run_sees_the_state_its_code_saw_the_first_time(
    app: tether.App,
) -> None:
    # the invocation carried the latest state: a replay read, before its first update,
    # the state after it, as an in-process resume did too
    async def count(wf: tether.Workflow) -> Any:
        seen = wf.state
        await wf.update_state(lambda s: s + 1)
        await wf.wait_for_signal("go")
        return [seen, wf.state]

    tenant = TenantApp(secret=SECRET)
    tenant.workflow(name="count-on")(count)
    local = app.workflow(name="count-on-here")(count)
    for fn, wid in ((_served(app, tenant, "count-on"), "rs-1"), (local, "rs-2")):
        assert app.run(fn, workflow_id=wid, initial_state=10).status is RunStatus.WAITING
        app.signal(wid, "go")
        assert app.run(fn, workflow_id=wid).value == [10, 11]
        assert app.get_record(wid).state == 11


def test_a_token_is_known_to_the_orchestrator_once_created(app: tether.App) -> None:
    # it was registered only when the body parked on it: completing it before failed
    # with TokenNotFoundError and the completion was lost
    async def hook(wf: tether.Workflow) -> Any:
        token = await wf.create_token()
        await wf.step("hand-out", lambda: token)  # e.g. to a webhook
        await wf.wait_for_signal("go")  # something else first
        return await wf.wait_for_token(token, timeout=3600)

    tenant = TenantApp(secret=SECRET)
    tenant.workflow(name="hook")(hook)
    flow = _served(app, tenant, "hook")
    assert app.run(flow, workflow_id="tk-1").status is RunStatus.WAITING
    token = app.get_record("tk-1").steps["hand-out"].result
    assert app.complete_token(token, {"ok": 1}) == "tk-1"
    app.signal("tk-1", "go")
    assert app.run(flow, workflow_id="tk-1").value == {"ok": 1}


class _Twice(httpx.AsyncBaseTransport):
    """The tenant's answer with each step line delivered twice (a retrying proxy)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        lines = (await resp.aread()).splitlines(keepends=True)
        doubled = [x for line in lines for x in [line] * (1 + ('"type":"step"' in str(line)))]
        return httpx.Response(resp.status_code, headers=resp.headers, content=b"".join(doubled))


def test_a_step_line_delivered_twice_is_recorded_once(app: tether.App) -> None:
    # the second copy was recorded as a new step "ask#2", and the body's real second
    # call of "ask" was answered from it without running
    ran: list[str] = []

    def ask(answer: str) -> str:
        ran.append(answer)
        return answer

    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="twice")
    async def twice(wf: tether.Workflow) -> list[str]:
        first = await wf.step("ask", lambda: ask("one"))
        await wf.wait_for_signal("next")
        return [first, await wf.step("ask", lambda: ask("two"))]

    flow = _served(app, tenant, "twice", transport=_Twice(httpx.ASGITransport(handler(tenant))))
    assert app.run(flow, workflow_id="dup-1").status is RunStatus.WAITING
    assert {k: s.result for k, s in app.get_record("dup-1").steps.items()} == {
        "remote.tenant": "http://t/",
        "ask": "one",
    }
    app.signal("dup-1", "next")
    assert app.run(flow, workflow_id="dup-1").value == ["one", "two"]
    assert ran == ["one", "two"]
    assert app.get_record("dup-1").steps["ask#2"].attempts == 1


def test_a_tenant_step_may_not_take_the_orchestrators_key(app: tether.App) -> None:
    # it was recorded as "remote.tenant#2" and answered on replay with the tenant's URL
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="clash")
    async def clash(wf: tether.Workflow) -> str:
        return await wf.step("remote.tenant", lambda: "mine")

    with pytest.raises(tether.remote.RemoteWorkflowError, match=r"'remote\.tenant'"):
        app.run(_served(app, tenant, "clash"), workflow_id="cl-1")
    assert list(app.get_record("cl-1").steps) == ["remote.tenant"]


def test_a_run_moves_to_a_compatible_version(tmp_path: Path) -> None:
    # remote_workflow had no compatible=, and each invocation sent the registered
    # version, not the run's: a run started under "1" could not be resumed by "2"
    def tenant_at(version: str, compatible: list[str]) -> TenantApp:
        t = TenantApp(secret=SECRET)

        @t.workflow(name="up", version=version, compatible=compatible)
        async def up(wf: tether.Workflow) -> str:
            a = await wf.step("a", lambda: "A")
            await wf.wait_for_signal("go")
            return a + await wf.step("b", lambda: "B" + version)

        return t

    sent: list[str | None] = []
    db = f"sqlite:///{tmp_path}/up.db"
    with tether.App(db) as old:
        flow = _served(old, tenant_at("1", []), "up", version="1")
        assert old.run(flow, workflow_id="up-1").status is RunStatus.WAITING
    inner = httpx.ASGITransport(handler(tenant_at("2", ["1"])))

    class Seen(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(json.loads(request.content)["version"])
            return await inner.handle_async_request(request)

    with tether.App(db) as new:
        flow = _served(new, TenantApp(secret=SECRET), "up", version="2", compatible=["1"],
                       transport=Seen())  # fmt: skip
        new.signal("up-1", "go")
        assert new.run(flow, workflow_id="up-1").value == "AB2"
        assert new.get_record("up-1").workflow_version == "1"
    assert sent == ["1"]


def test_a_tenant_on_a_fake_clock_serves_and_times_its_waits(clock: tether.FakeClock) -> None:
    # the handler checked signatures and deadlines on the tenant's clock (401
    # stale_timestamp on a FakeClock), and a wait's timeout went as a due time on the
    # tenant's clock, read back on the orchestrator's
    from tether.testing import memory_app

    def tenant_on(tenant_clock: Any) -> TenantApp:
        t = TenantApp(secret=SECRET, clock=tenant_clock)

        @t.workflow(name="reply")
        async def reply(wf: tether.Workflow) -> object:
            return await wf.wait_for_signal("reply", timeout=3600, default="no reply")

        return t

    for tenant_clock in (clock, None):  # the App's clock, then the wall clock
        with memory_app(clock) as app:
            flow = _served(app, tenant_on(tenant_clock), "reply")
            assert app.run(flow, workflow_id="fc-1").status is RunStatus.WAITING
            (wait,) = app.list_waits("fc-1")
            assert wait.due_at is not None
            assert abs((wait.due_at - clock.now()).total_seconds() - 3600) < 1
            clock.advance(3601)
            assert app.fire_due_timers() == ["fc-1"]
            assert app.run(flow, workflow_id="fc-1").value == "no reply"


def test_a_failure_whose_message_the_store_cannot_keep_fails_the_run(app: tether.App) -> None:
    # a lone surrogate broke the answer's encoding on the tenant (behind uvicorn the
    # stream ended without a status and the run was invoked again up to its cap); a
    # NUL character stopped PostgreSQL from recording the failure (the run stayed
    # running)
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="garbled")
    async def garbled(wf: tether.Workflow) -> None:
        await wf.step("read", lambda: 1)
        raise ValueError("bad byte \x00 in \udc80 the file")

    flow = _served(app, tenant, "garbled", max_invocations=2, retry_delay=0.01)
    with pytest.raises(tether.remote.RemoteWorkflowError, match=r"bad byte \\x00 in \\udc80"):
        app.run(flow, workflow_id="garbled-1")
    rec = app.get_record("garbled-1")
    assert rec.status is RunStatus.FAILED
    assert rec.steps["read"].result == 1
