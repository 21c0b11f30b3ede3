"""Lines and invocations of the wrong shape that failed a run with a bare Python error
(or were retried to the cap) where the protocol's clear answer belongs: a waitpoint's
timeout past what a datetime holds, a due_at without a UTC offset, a run's state that
is not JSON text, an input nested too deep to parse. Against real loopback servers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import tether
from tether.kernel import sign
from tether.remote import RemoteRefusedError

from ._http import serving
from ._procs import SECRET, Tenant, start_tenant

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson"


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _waiting(*waitpoints: dict[str, Any]) -> bytes:
    return _line({"type": "answer", "answer": {"status": "waiting", "waitpoints": waitpoints}})


def test_a_sleep_past_the_year_9999_parks_the_run(app: tether.App) -> None:
    # a sleep of 1e300 s: the run failed with "OverflowError: Python int too large to
    # convert to C int"; it waits on a timer that never fires, as far as any clock goes
    with serving(HEAD, _waiting({"key": "sleep#1", "kind": "sleep", "timeout": 1e300})) as url:
        flow = app.remote_workflow("sleeper", url=url, secret=SECRET)
        result = app.run(flow, workflow_id="sleeper-1")
    assert result.record.status is tether.RunStatus.WAITING
    [wait] = [w for w in app.list_waits("sleeper-1") if w.key == "sleep#1"]
    assert wait.due_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # LAST_DUE


def test_a_token_whose_timeout_is_past_the_year_9999_is_registered(app: tether.App) -> None:
    token = {"key": "token#1", "kind": "token", "name": "tok-41", "timeout": 1e300}
    done = _line({"type": "answer", "answer": {"status": "completed", "output": "7"}})
    with serving(HEAD, _line({"type": "wait", "wait": token}) + done) as url:
        flow = app.remote_workflow("tokens", url=url, secret=SECRET)
        assert app.run(flow, workflow_id="tokens-1").value == 7
    [wait] = [w for w in app.list_waits("tokens-1") if w.kind.value == "token"]
    assert wait.due_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # LAST_DUE


def test_a_due_at_without_a_utc_offset_is_not_a_protocol_line(app: tether.App) -> None:
    # it failed the run with "TypeError: can't subtract offset-naive and offset-aware"
    naive = {"key": "sleep#1", "kind": "sleep", "due_at": "2030-01-01T00:00:00"}
    with serving(HEAD, _waiting(naive)) as url:
        flow = app.remote_workflow("naive", url=url, secret=SECRET)
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow, workflow_id="naive-1")
    assert raised.value.code == "invalid_answer"
    assert "a waitpoint's due_at needs a UTC offset (e.g. +00:00)" in str(raised.value)


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    tenant = start_tenant(tmp_path_factory.mktemp("walk41"))
    yield tenant
    tenant.stop()


def _invoke(far: Tenant, **fields: Any) -> httpx.Response:
    payload = {
        "protocol": 1, "run_id": f"w41-{time.time_ns()}", "workflow": "double",
        "version": "1", "invocation": 1, "input": "3", "journal": {},
        "deadline": time.time() + 30, "accepts": ["attempt", "wait"],
    } | fields  # fmt: skip
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(SECRET, ts, body)}
    return httpx.post(far.url, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("state", "why"),
    [("{", "bad fields: state (not JSON text: '{')"),
     ("[" * 5000 + "]" * 5000, "bad fields: state (nested too deep)")],
    ids=["not-json", "too-deep"],
)  # fmt: skip
def test_a_state_that_is_not_json_text_is_refused(far: Tenant, state: str, why: str) -> None:
    # answered 200 with an "aborted" line ("executor error: JSONDecodeError"), which an
    # orchestrator takes for a tenant cut short and invokes again, to its cap
    resp = _invoke(far, state=state)
    assert resp.status_code == 400
    assert resp.json()["error"] == {"code": "invalid_request", "message": why, "details": {}}


def test_an_input_nested_too_deep_fails_the_run_saying_so(far: Tenant) -> None:
    resp = _invoke(far, input="[" * 5000 + "]" * 5000)
    assert resp.status_code == 200
    [line] = [json.loads(raw) for raw in resp.content.splitlines()]
    assert line["type"] == "answer"
    assert line["answer"]["status"] == "failed"
    assert line["answer"]["error"]["message"] == (
        "the input does not fit workflow 'double' on the tenant: it is nested too deep to "
        "parse; start the run again with an input of the type its function declares"
    )
