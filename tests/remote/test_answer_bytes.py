"""A tenant answers each invocation with what is new, not the run's whole journal
again: its answer line repeated every step the run had recorded, so a run of n
invocations was answered in O(n^2) bytes. The orchestrator rebuilds the run from the
step lines alone, a stream cut in the middle and invoked again included.

The tenant is a real uvicorn process; the orchestrator an App in this process on each
database, reaching it over loopback TCP through a transport that keeps what came."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import tether

from ._answers import CutAfterFirst
from ._procs import SECRET, Tenant, start_tenant


class _Kept(httpx.AsyncBaseTransport):
    """The answers of `inner`, each kept as the lines the orchestrator was given."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.answers: list[list[bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        body = await resp.aread()
        self.answers.append(body.splitlines())
        return httpx.Response(resp.status_code, headers=resp.headers, content=body)

    async def aclose(self) -> None:
        """Closed with the orchestrator's client: a real transport's open connections too."""
        await self.inner.aclose()

    def last_lines(self) -> list[dict[str, Any]]:
        """The last line of each answer, parsed."""
        return [json.loads(lines[-1]) for lines in self.answers]


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    tenant = start_tenant(tmp_path_factory.mktemp("answers"))
    yield tenant
    tenant.stop()


def _climb(app: tether.App, far: Tenant, transport: httpx.AsyncBaseTransport, plan: dict) -> str:
    """Run ``ladder`` with `plan` to its end, each signal it waits for sent up front
    (kept until a wait takes it); the run's id."""
    flow = app.remote_workflow(
        "ladder", url=far.url, secret=SECRET, version="1", retry_delay=0.01, transport=transport
    )
    wid = app.start(flow, plan, workflow_id=f"ladder-{uuid.uuid4().hex[:8]}")
    for i in range(plan["steps"] // plan["every"]):
        app.signal(wid, "next", 100 * i)
    return wid


def _rungs(rec: tether.RunRecord) -> dict[str, Any]:
    return {k: s.result for k, s in rec.steps.items() if k != "remote.tenant"}


def test_a_long_run_is_answered_in_bytes_linear_in_its_steps(app: tether.App, far: Tenant) -> None:
    n = 30
    kept = _Kept(httpx.AsyncHTTPTransport())
    wid = _climb(app, far, kept, {"steps": n, "every": 1})
    assert app.result(wid, timeout=120).value == sum(range(n)) + sum(100 * i for i in range(n))
    # one invocation per signal and one to end: each sent its new rung (an attempt and a
    # step line) and its answer, whose journal held no step the run had recorded
    assert len(kept.answers) == n + 1
    assert sum(len(lines) for lines in kept.answers) == 2 * n + n + 1
    sizes = [len(lines[-1]) for lines in kept.answers[:-1]]  # the waiting answers
    assert max(sizes) - min(sizes) <= 8, sizes  # a wait's key grew a digit; nothing else
    answers = kept.last_lines()
    assert {a["type"] for a in answers} == {"answer"}
    assert all(a["answer"]["journal"]["steps"] == [] for a in answers)
    assert _rungs(app.get_record(wid)) == {f"rung{i}": i for i in range(n)}
    assert far.side(wid) == [f"rung{i}" for i in range(n)]  # each ran once


def test_a_stream_cut_mid_invocation_is_rebuilt_from_its_lines(
    app: tether.App, far: Tenant
) -> None:
    # the first answer dropped right after rung1's step line: rung0 and rung1 were
    # recorded, the next invocation carried them and ran rung2 again (its line was lost)
    cut = CutAfterFirst(httpx.AsyncHTTPTransport(), b'"step":{"key":"rung1"')
    kept = _Kept(cut)
    wid = _climb(app, far, kept, {"steps": 6, "every": 3})
    assert app.result(wid, timeout=120).value == sum(range(6)) + 0 + 100
    assert cut.cuts == 1
    assert _rungs(app.get_record(wid)) == {f"rung{i}": i for i in range(6)}
    assert far.side(wid) == ["rung0", "rung1", "rung2", "rung2", "rung3", "rung4", "rung5"]
    answers = kept.last_lines()
    assert answers[0]["type"] == "step"  # the cut one: no answer
    assert [a["answer"]["status"] for a in answers[1:]] == ["waiting", "waiting", "completed"]
    # after the reconnect, the journal it was sent (rung0, rung1) was not sent back
    assert all(a["answer"]["journal"]["steps"] == [] for a in answers[1:])
