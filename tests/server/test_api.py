"""Every endpoint, round trip, through the typed client against a real `tether serve`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tether import AsyncClient, Client, EndReason, RunRecord, RunStatus
from tether.server import ApiError
from tether.testing import eventually, eventually_sync

from ._serve import Served, start


def _done(client: Client, wid: str) -> RunRecord:
    def ended() -> RunRecord:
        rec = client.get_record(wid)
        assert rec.status.terminal, rec.status
        return rec

    return eventually_sync(ended, timeout=30)


def _parked(client: Client, wid: str) -> RunRecord:
    def waiting() -> RunRecord:
        rec = client.get_record(wid)
        assert rec.status is RunStatus.WAITING, rec.status
        return rec

    return eventually_sync(waiting, timeout=30)


def round_trip(served: Served) -> None:
    """Start, inspect, signal, list: the API round trip (run on both databases)."""
    with Client(served.url) as client:
        wid = client.start("greet", {"name": "Ada"}, tags=["t1"], tenant="acme")
        rec = _done(client, wid)
        assert rec.status is RunStatus.COMPLETED and rec.output == "hi Ada"
        assert list(rec.steps) == ["hello"] and rec.steps["hello"].result == "hello"
        events = client.events(wid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].type == "workflow.completed"
        assert client.events(wid, after=events[-2].seq) == events[-1:]
        parked = client.start("waits", workflow_id="w-1")
        _parked(client, parked)
        assert client.signal(parked, "go", {"ok": True}) is True
        assert _done(client, parked).output == {"ok": True}
        page = client.list_runs(tenant="acme")
        assert [r.workflow_id for r in page.runs] == [wid]
        assert page.runs[0].tags == ["t1"] and page.next_cursor is None
        assert page.runs[0].end_reason is EndReason.COMPLETED


def test_round_trip_on_sqlite(served: Served) -> None:
    round_trip(served)


def test_round_trip_on_postgresql(pg_served: Served) -> None:
    round_trip(pg_served)


def test_the_record_is_the_export_of_the_cli(served: Served) -> None:
    from ._serve import tether

    with Client(served.url) as client:
        wid = client.start("greet", {"name": "Bo"})
        rec = _done(client, wid)
        raw = httpx.get(f"{served.url}/api/v1/runs/{wid}").json()
    exported = tether(served.folder, served.db, "runs", "export", wid)
    import json

    assert json.loads(exported.stdout) == raw
    assert RunRecord.from_dict(raw) == rec


def test_list_filters_and_cursor_pagination(served: Served) -> None:
    with Client(served.url) as client:
        ids = [client.start("counts", 1, tags=["odd" if i % 2 else "even"]) for i in range(5)]
        for wid in ids:
            _done(client, wid)
        first = client.list_runs(limit=2)
        assert len(first.runs) == 2 and first.next_cursor is not None
        every = list(client.iter_runs(limit=2))
        assert sorted(r.workflow_id for r in every) == sorted(ids)
        assert [r.created_at for r in every] == sorted((r.created_at for r in every), reverse=True)
        assert len({r.workflow_id for r in every}) == 5  # no run on two pages
        odd = {r.workflow_id for r in client.iter_runs(tag="odd")}
        assert odd == {ids[1], ids[3]}
        assert client.list_runs(workflow="greet").runs == []
        assert len(client.list_runs(status="completed", workflow="counts", limit=500).runs) == 5
        later = datetime.now(UTC) + timedelta(hours=1)
        assert client.list_runs(created_after=later).runs == []
        assert len(client.list_runs(created_before=later).runs) == 5


def test_submit_to_a_queue_and_the_queues_and_workers(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("counts", 2, queue="slow", priority=3)
        assert client.get_record(wid).status is RunStatus.PENDING  # no worker serves it
        queues = {q.name: q for q in client.queues()}
        assert queues["slow"].jobs == {"queued": 1} and queues["slow"].concurrency == 2
        workers = client.workers()
        assert all(isinstance(w.workflows, list) for w in workers)


def test_cancel_complete_token_send_event_and_waits(served: Served) -> None:
    with Client(served.url) as client:
        a = client.start("waits")
        _parked(client, a)
        assert client.cancel(a, "no longer needed") == [a]
        done = _done(client, a)
        assert done.status is RunStatus.CANCELLED and done.end_reason is EndReason.CANCELLED
        (summary,) = [r for r in client.list_runs(status="cancelled").runs if r.workflow_id == a]
        assert summary.end_reason is EndReason.CANCELLED
        assert summary.error is not None and summary.error["message"] == "no longer needed"
        assert summary.error["retryable"] is False and summary.error["cause"] is None
        t = client.start("tokened")
        _parked(client, t)
        (wait,) = [w for w in client.waits(t) if w.kind == "token"]
        assert client.complete_token(wait.id, 42) == t
        assert _done(client, t).output == 42
        h = client.start("hooked")
        _parked(client, h)
        assert client.send_event("github", {"action": "opened"}) == [h]
        assert _done(client, h).output == {"action": "opened"}


def test_a_run_id_with_a_slash_is_one_run_everywhere(served: Served) -> None:
    """A child's id holds '/' (``parent/kid#1``): its routes and its dashboard page take
    it whole (before: 404 for every route of such a run)."""
    wid = "team/a?#1"
    with Client(served.url) as client:
        assert client.start("waits", workflow_id=wid) == wid
        assert _parked(client, wid).workflow_id == wid
        assert [w.kind for w in client.waits(wid)] == ["signal"]
        assert client.events(wid)[0].seq == 1
        assert client.ai_calls(wid) == []
        assert client.signal(wid, "go", 5)
        assert _done(client, wid).output == 5
        assert [e.type for e in client.stream_events(wid)][-1] == "workflow.completed"
    page = httpx.get(f"{served.url}/runs/team/a%3F%231")
    assert page.status_code == 200 and "team/a?#1" in page.text
    missing = httpx.get(f"{served.url}/api/v1/runs/team/none")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_rerun_from_a_step(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("counts", 3)
        first = _done(client, wid)
        assert client.rerun_from(wid, "tick#2") == [wid]

        def again() -> bool:
            rec = client.get_record(wid)
            assert rec.status is RunStatus.COMPLETED and rec.updated_at > first.updated_at
            return True

        eventually_sync(again, timeout=30)
        with pytest.raises(ApiError) as err:
            client.rerun_from(client.start("waits"), "before")
        assert err.value.status in (409, 404)


def test_usage_and_ai_calls_of_a_run_without_calls(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("counts", 1)
        _done(client, wid)
        assert client.ai_calls(wid) == []
        (total,) = client.usage()
        assert total.calls == 0 and total.cost_micro_usd == 0
        assert client.usage(group_by="model", run=wid) == []


def test_errors_are_json_with_code_message_and_details(served: Served) -> None:
    with Client(served.url) as client:
        with pytest.raises(ApiError) as err:
            client.get_record("nope")
        assert (err.value.status, err.value.code) == (404, "run_not_found")
        with pytest.raises(ApiError) as err:
            client.start("no-such-workflow")
        assert (err.value.status, err.value.code) == (404, "workflow_not_found")
        with pytest.raises(ApiError) as err:
            client.start("greet", {"nom": "x"})  # the input does not fit the workflow
        assert err.value.status == 422
    bad = httpx.post(f"{served.url}/api/v1/runs", json={"workflw": "greet"})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_request"
    assert "workflow" in error["message"] and "workflw" in error["message"]
    assert {d["field"] for d in error["details"]} == {"body.workflow", "body.workflw"}
    assert (
        httpx.get(f"{served.url}/api/v1/runs?limit=0").json()["error"]["details"][0]["field"]
        == "query.limit"
    )
    missing = httpx.get(f"{served.url}/api/v1/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # an event number past 64 bits: a 422 naming it, not a 500 from the database
    with Client(served.url) as client:
        wid = client.start("greet", {"name": "Ada"})
    huge = "9" * 23
    for path in ("events", "events/stream"):
        got = httpx.get(f"{served.url}/api/v1/runs/{wid}/{path}?after={huge}")
        assert (
            got.status_code == 422 and got.json()["error"]["details"][0]["field"] == "query.after"
        )
    for header in (huge, "\u00b9\u00b2"):  # too large, and digits that are not ASCII
        with httpx.stream(
            "GET", f"{served.url}/api/v1/runs/{wid}/events/stream",
            headers={"Last-Event-ID": header.encode("latin-1")},
        ) as got:  # fmt: skip
            body = got.read().decode()
        assert got.status_code == 200 and "event: end" in body


def test_a_cancel_flag_must_be_a_json_boolean(served: Served) -> None:
    """``{"compensate": "yes"}`` (or 1, or "false") was read as a boolean by pydantic's
    lax rules: a client's mistake decided whether undo steps ran."""
    with Client(served.url) as client:
        wid = client.start("waits")
        _parked(client, wid)
    for flag in ("yes", 1, "false"):
        got = httpx.post(f"{served.url}/api/v1/runs/{wid}/cancel", json={"compensate": flag})
        assert got.status_code == 422, (flag, got.text)
        assert got.json()["error"]["details"][0]["field"] == "body.compensate"
    assert httpx.get(f"{served.url}/api/v1/runs/{wid}").json()["status"] == "waiting"
    done = httpx.post(f"{served.url}/api/v1/runs/{wid}/cancel", json={"compensate": False})
    assert done.status_code == 200, done.text


def test_idempotency_key_makes_a_retried_post_safe(served: Served) -> None:
    with Client(served.url) as client:
        one = client.start("counts", 1, idempotency_key="k-1")
        again = client.start("counts", 1, idempotency_key="k-1")
        assert one == again
        assert len(client.list_runs(workflow="counts").runs) == 1
        with pytest.raises(ApiError) as err:
            client.start("counts", 2, idempotency_key="k-1")
        assert (err.value.status, err.value.code) == (409, "idempotency_conflict")
    replay = httpx.post(
        f"{served.url}/api/v1/runs",
        json={"workflow": "counts", "input": 1},
        headers={"Idempotency-Key": "k-1"},
    )
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["workflow_id"] == one
    first = httpx.post(
        f"{served.url}/api/v1/events", json={"type": "x"}, headers={"Idempotency-Key": "e"}
    )
    second = httpx.post(
        f"{served.url}/api/v1/events", json={"type": "x"}, headers={"Idempotency-Key": "e"}
    )
    assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"


def test_a_refused_request_does_not_pin_its_idempotency_key(served: Served) -> None:
    # a 422 was kept for 24 h: the corrected request under the same key got a 409
    url, key = f"{served.url}/api/v1/runs", {"Idempotency-Key": "fix-me"}
    bad = httpx.post(url, json={"workflow": "counts", "input": "one"}, headers=key)
    assert bad.status_code == 422
    good = httpx.post(url, json={"workflow": "counts", "input": 1}, headers=key)
    assert good.status_code == 201, good.text
    again = httpx.post(url, json={"workflow": "counts", "input": 1}, headers=key)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["workflow_id"] == good.json()["workflow_id"]


def test_starting_a_run_id_that_exists_answers_it_with_200_not_201(served: Served) -> None:
    # the same workflow_id answers the run it names, as `App.start` does: a second POST
    # got 201 Created, though nothing was started (a finished run stayed finished)
    url = f"{served.url}/api/v1/runs"
    first = httpx.post(url, json={"workflow": "counts", "input": 1, "workflow_id": "nightly"})
    assert first.status_code == 201, first.text
    with Client(served.url) as client:
        _done(client, "nightly")
        again = httpx.post(url, json={"workflow": "counts", "input": 1, "workflow_id": "nightly"})
        assert again.status_code == 200, again.text
        assert again.json() == {"workflow_id": "nightly"}
        assert again.headers["location"] == first.headers["location"]
        assert len(client.list_runs().runs) == 1
    other = httpx.post(url, json={"workflow": "counts", "input": 1, "workflow_id": "other"})
    assert other.status_code == 201  # a new id: a new run


def test_openapi_document_describes_the_error_body_the_server_sends(served: Served) -> None:
    # every 422 was documented as FastAPI's {"detail": [...]}, a body this server never
    # sends ({"error": {"code", "message", "details"}}), and no other error at all: a
    # client made from the document read every refusal wrong
    with Client(served.url) as client:
        doc = client.openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in doc["paths"].items():
        if not path.startswith(("/api/", "/hooks/")):
            continue
        for method, op in ops.items():
            answers = op["responses"]
            assert answers["4XX"]["content"]["application/json"]["schema"] == ref, (method, path)
            assert "422" not in answers, (method, path)
    refused = httpx.post(f"{served.url}/api/v1/runs", json={})
    assert refused.status_code == 422
    assert set(refused.json()) == {"error"}
    assert set(refused.json()["error"]) == set(
        doc["components"]["schemas"]["ErrorDetail"]["properties"]
    )


def test_a_method_a_path_does_not_take_is_named_with_those_it_takes(served: Served) -> None:
    # a bare "Method Not Allowed", and no Allow header (HTTP requires one in a 405)
    api = f"{served.url}/api/v1"
    for method, path, allowed in [
        ("DELETE", "/runs/x", "GET, HEAD, OPTIONS"),
        ("PUT", "/runs", "GET, HEAD, OPTIONS, POST"),  # two routes: both named
        ("GET", "/events", "OPTIONS, POST"),
        ("GET", "/api-tokens/abc", "DELETE, OPTIONS"),
    ]:
        got = httpx.request(method, api + path)
        assert got.status_code == 405, (method, path)
        assert got.headers["allow"] == allowed, (method, path)
        error = got.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert error["message"] == f"{method} is not allowed at /api/v1{path}; it takes {allowed}"


def test_body_size_limit(served: Served) -> None:
    big = {"type": "x", "payload": "a" * (1024 * 1024)}
    resp = httpx.post(f"{served.url}/api/v1/events", json=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "body_too_large"
    assert httpx.post(f"{served.url}/api/v1/events", json={"type": "x"}).status_code == 200


def test_openapi_document_names_every_route(served: Served) -> None:
    with Client(served.url) as client:
        doc = client.openapi()
    paths = set(doc["paths"])
    assert {
        "/api/v1/runs",
        "/api/v1/runs/{workflow_id}",
        "/api/v1/runs/{workflow_id}/events",
        "/api/v1/runs/{workflow_id}/events/stream",
        "/api/v1/runs/{workflow_id}/cancel",
        "/api/v1/runs/{workflow_id}/signal",
        "/api/v1/runs/{workflow_id}/rerun",
        "/api/v1/runs/{workflow_id}/retry-compensations",
        "/api/v1/events",
        "/api/v1/wait-tokens/{token_id}/complete",
        "/api/v1/usage",
        "/api/v1/queues",
        "/api/v1/workers",
        "/api/v1/api-tokens",
        "/hooks/{name}",
    } <= paths
    assert "StartRun" in doc["components"]["schemas"]


async def test_the_async_client(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        wid = await client.start("waits")

        async def parked() -> bool:
            return (await client.get_record(wid)).status is RunStatus.WAITING

        await eventually(parked, timeout=30)
        assert await client.signal(wid, "go", 7)

        async def done() -> bool:
            return bool((await client.get_record(wid)).output == 7)

        await eventually(done, timeout=30)
        assert [r.workflow_id async for r in client.iter_runs()] == [wid]
        assert (await client.events(wid))[-1].type == "workflow.completed"
        assert [q.name for q in await client.queues()] == ["slow"]
        with pytest.raises(ApiError):
            await client.get_record("nope")


def test_queued_only_options_without_a_queue_are_refused_not_ignored(served: Served) -> None:
    """Before, a run_after in 2030 without a queue started the run at once."""
    later = datetime(2030, 1, 1, tzinfo=UTC)
    with Client(served.url) as client:
        for options in ({"run_after": later}, {"max_attempts": 1}, {"concurrency_key": "c"}):
            with pytest.raises(ApiError) as err:
                client.start("counts", 1, **options)
            (name,) = options
            assert (err.value.status, err.value.code) == (422, "invalid_request")
            assert name in err.value.message and 'pass "queue"' in err.value.message
        assert client.list_runs().runs == []  # nothing was started
        wid = client.start("counts", 1, queue="slow", run_after=later, max_attempts=1)
        assert client.get_record(wid).status is RunStatus.PENDING
    both = httpx.post(
        f"{served.url}/api/v1/runs",
        json={"workflow": "counts", "max_attempts": 2, "run_after": None},
    ).json()["error"]
    assert {d["field"] for d in both["details"]} == {"body.max_attempts", "body.run_after"}


def test_a_camel_case_or_misspelt_body_field_is_refused_naming_the_field_to_send(
    served: Served,
) -> None:
    # a run's record is camelCase ("workflowId"), the API's bodies snake_case: such a
    # field was a bare "Extra inputs are not permitted"
    api = f"{served.url}/api/v1"

    def refused(path: str, body: dict[str, object]) -> str:
        got = httpx.post(f"{api}/{path}", json=body)
        assert got.status_code == 422, got.text
        error = got.json()["error"]
        assert error["code"] == "invalid_request"
        (detail,) = error["details"]
        assert detail["type"] == "extra_forbidden" and detail["message"] in error["message"]
        return str(detail["message"])

    start = {"workflow": "greet", "input": {"name": "Ada"}}
    assert refused("runs", start | {"workflowId": "x"}) == (
        'unknown field; the API\'s fields are snake_case: send "workflow_id"'
    )
    assert 'send "max_attempts"' in refused("runs", start | {"queue": "slow", "maxAttempts": 2})
    assert (
        refused("runs", start | {"wokflow_id": "x"}) == 'unknown field; did you mean "workflow_id"?'
    )
    assert "Idempotency-Key header" in refused("runs", start | {"idempotencyKey": "k"})
    assert refused("runs", start | {"colour": "red"}).startswith("unknown field; known: workflow, ")
    assert 'send "abandon_batches"' in refused("runs/x/cancel", {"abandonBatches": True})
    with Client(served.url) as client:
        assert client.list_runs().runs == []  # nothing was started
    ok = httpx.post(f"{api}/runs", json=start | {"workflow_id": "x"})  # valid today, still
    assert ok.status_code == 201 and ok.json() == {"workflow_id": "x"}


def test_cancel_takes_no_body(served: Served) -> None:
    """Every field of the cancel body is optional, so is the body (before: 422)."""
    with Client(served.url) as client:
        wid = client.start("waits")
        _parked(client, wid)
        resp = httpx.post(f"{served.url}/api/v1/runs/{wid}/cancel")
        assert resp.status_code == 200 and resp.json() == {"cancelled": [wid]}
        assert _done(client, wid).status is RunStatus.CANCELLED


def test_cancel_refuses_to_leave_batches_the_served_app_cannot_reach(served: Served) -> None:
    """The served App has no providers: a cancel would leave the batch billing on."""
    from tether import App, Workflow, ai

    from ..ai._server import ProviderServer

    provider = ProviderServer()
    try:
        mine = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=provider.openai_url))
        with App(served.db, ai=mine, inline_wait=0) as app:

            @app.workflow(name="batched")
            async def batched(wf: Workflow) -> int:
                res = await wf.ai.batch("openai:gpt-4.1-mini", ["a"], poll_every=3600)
                return len(res.items)

            app.run(batched, workflow_id="b1")
        [batch] = provider.state.batches.values()
        with Client(served.url) as client:
            with pytest.raises(ApiError) as refused:
                client.cancel("b1")
            assert (refused.value.status, refused.value.code) == (409, "batches_out")
            assert f"openai batch {batch['id']!r}" in refused.value.message
            assert client.get_record("b1").status is RunStatus.WAITING
            assert client.cancel("b1", abandon_batches=True) == ["b1"]
        assert batch["status"] == "in_progress"
    finally:
        provider.close()


NOT_STORABLE: list[tuple[str, str, object, str]] = [
    ("POST", "/runs", {"workflow": "counts", "input": 1, "tenant": "a\0b"}, "body.tenant"),
    ("POST", "/runs", {"workflow": "counts", "input": 1, "tags": ["ok", "a\0"]}, "body.tags.1"),
    # a lone surrogate, as JSON may spell it (and Python decodes it)
    ("POST", "/runs", '{"workflow": "counts", "tenant": "\\ud800"}', "body.tenant"),
    ("GET", "/runs?workflow=a%00b", None, "query.workflow"),
    ("GET", "/runs?tag=a%00b", None, "query.tag"),
    ("GET", "/runs?tenant=a%00b", None, "query.tenant"),
    ("GET", "/usage?workflow=a%00b", None, "query.workflow"),
    ("GET", "/usage?tag=a%00b", None, "query.tag"),
    ("GET", "/usage?run=a%00b", None, "query.run"),
    ("POST", "/api-tokens", {"scope": "read", "name": "a\0b"}, "body.name"),
]


def test_text_the_database_cannot_store_is_a_422_naming_the_field(either_served: Served) -> None:
    """On PostgreSQL these were a 503 store_unavailable."""
    for method, path, body, field in NOT_STORABLE:
        url = f"{either_served.url}/api/v1{path}"
        if isinstance(body, str):
            json_type = {"content-type": "application/json"}
            resp = httpx.request(method, url, content=body, headers=json_type)
        else:
            resp = httpx.request(method, url, json=body)
        error = resp.json()["error"]
        assert resp.status_code == 422 and error["code"] == "invalid_request", resp.text
        assert field in error["message"] and "NUL" in error["message"]
        assert [d["field"] for d in error["details"]] == [field]
    with Client(either_served.url) as client:
        assert client.list_runs().runs == [] and client.list_api_tokens() == []
    forged = json.dumps(["a\0", "2026-01-01T00:00:00+00:00"]).encode()
    cursor = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    resp = httpx.get(f"{either_served.url}/api/v1/runs", params={"cursor": cursor})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_cursor"


NAPPING = """
import os

import tether

app = tether.App(os.environ["FLOWS_DB"], inline_wait=0)  # every wait parks at once

@app.workflow
async def naps(wf: tether.Workflow) -> str:
    await wf.sleep(1)
    return "rested"

@app.workflow
async def hears(wf: tether.Workflow) -> object:
    return await wf.wait_for_signal("x", timeout=1, default="timed out")
"""


def test_the_server_wakes_the_timers_of_the_runs_it_drives(tmp_path: Path) -> None:
    # nothing in `tether serve` fired a timer that outlived the inline wait: a run
    # parked on wf.sleep stayed waiting until some other run happened to wait inline
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=NAPPING)
    try:
        with Client(served.url) as client:
            napping, hearing = client.start("naps"), client.start("hears")

            def ended(wid: str) -> object:
                rec = client.get_record(wid)
                assert rec.status is RunStatus.COMPLETED, rec.status
                return rec.output

            assert eventually_sync(lambda: ended(napping), timeout=30) == "rested"
            assert eventually_sync(lambda: ended(hearing), timeout=30) == "timed out"
    finally:
        served.stop()


def test_a_cursor_with_a_lone_surrogate_is_a_422(either_served: Served) -> None:
    """It reached the store: a plain-text 500 from the API and from the dashboard."""
    forged = json.dumps(["\ud800", "2026-01-01T00:00:00+00:00"]).encode()
    cursor = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    resp = httpx.get(f"{either_served.url}/api/v1/runs", params={"cursor": cursor})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_cursor"
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode()
    resp = httpx.get(f"{either_served.url}/api/v1/runs", params={"cursor": deep})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_cursor"
    page = httpx.get(f"{either_served.url}/runs", params={"cursor": cursor})
    assert page.status_code == 200  # the dashboard shows the first page instead
    assert "Traceback" not in either_served.log


FAILING = """
import os

from pydantic import BaseModel, field_validator

import tether

app = tether.App(os.environ["FLOWS_DB"])

class Order(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def check(cls, n: int) -> int:
        raise LookupError("a bug in the served code")  # not a ValueError: not pydantic's

@app.workflow
async def orders(wf: tether.Workflow, order: Order) -> int:
    return order.n
"""


def test_an_unexpected_error_is_a_json_500_and_logged(tmp_path: Path) -> None:
    """It was a plain-text 500 (``Internal Server Error``), not the API's JSON."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FAILING)
    try:
        resp = httpx.post(
            f"{served.url}/api/v1/runs", json={"workflow": "orders", "input": {"n": 1}}
        )
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "application/json"
        error = resp.json()["error"]
        assert error["code"] == "internal" and "LookupError" in error["message"]
        assert "server's log" in error["message"]
        eventually_sync(lambda: "LookupError: a bug in the served code" in served.log, timeout=60)
        assert "Traceback" in served.log
    finally:
        served.stop()


BAD_BODIES = (
    (b'{"type": "\xff"}', "not UTF-8"),
    (b'{"type": "x", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b'{"type": "x", "payload": ' + b"9" * 5000 + b"}", "too many digits"),
)


def test_a_body_that_is_not_json_is_a_422_saying_why(served: Served) -> None:
    """These were a 400 ``http_error`` "There was an error parsing the body"."""
    for body, why in BAD_BODIES:
        resp = httpx.post(
            f"{served.url}/api/v1/events",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "invalid_request"
        assert "not valid JSON" in error["message"] and why in error["message"]
        assert [d["field"] for d in error["details"]] == ["body"]


@pytest.mark.parametrize("path", ["/api/v1/runs?created_after", "/api/v1/usage?since"])
def test_a_time_without_a_zone_is_refused_with_an_example_that_works(
    served: Served, path: str
) -> None:
    """A date alone was told "give a time zone (e.g. Z)" (runs) or "must be a
    timezone-aware datetime" (usage, naming no field); 2026-12-04Z is no time at all,
    so the advice led to a second 422. The example given is one the server takes."""
    field = path.rsplit("?", 1)[1]
    for given, kept in (("2026-12-04", "T00:00:00Z"), ("2026-12-04T10:00:00", "T10:00:00Z")):
        got = httpx.get(f"{served.url}{path}={given}")
        assert got.status_code == 422, got.text
        error = got.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"] == [{"field": f"query.{field}", "message": "needs a time zone"}]
        example = error["message"].split("e.g. ")[1].split(" ")[0]
        assert example == "2026-12-04" + kept  # the time asked for, in UTC
        assert httpx.get(f"{served.url}{path}={example}").status_code == 200
