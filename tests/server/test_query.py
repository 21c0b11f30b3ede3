"""What a user's probe of `tether serve` found: a filter given empty (``?workflow=``)
matched nothing, a misspelt parameter (``?stauts=failed``) was ignored, so the
caller took an empty or an unfiltered list for the answer; and HEAD, which HTTP
asks of a server that offers GET, was a 405."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from ._serve import Served

RUNS_TAKES = (
    "status, workflow, tag, tenant, parent, created_after, created_before, cursor, limit, fields"
)


def _refused(got: httpx.Response, code: str) -> dict[str, Any]:
    assert got.status_code == 400, got.text
    error: dict[str, Any] = got.json()["error"]
    assert error["code"] == code
    return error


def _ended(client: Client, wid: str) -> None:
    eventually_sync(lambda: client.get_record(wid).status.terminal, timeout=30)


def test_a_parameter_given_empty_is_refused_naming_it(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("greet", {"name": "Ada"})
        _ended(client, wid)
    api = f"{served.url}/api/v1"
    given = ["runs?workflow="] + [f"runs?{name}=" for name in RUNS_TAKES.split(", ")]
    given += [f"usage?{name}=" for name in ("workflow", "tag", "since", "group_by", "children")]
    given += [f"runs/{wid}/events?after=", f"runs/{wid}/ai-calls?children=", "runs?tag"]
    for query in given:
        error = _refused(httpx.get(f"{api}/{query}"), "empty_parameter")
        name = query.split("?")[1].rstrip("=")
        assert error["details"] == [
            {"field": f"query.{name}", "message": "given empty", "type": "empty_parameter"}
        ], query
        assert error["message"] == (
            f"query.{name}: given empty (leave the parameter out, or give it a value)"
        )
    both = _refused(httpx.get(f"{api}/runs?workflow=greet&tag=&tenant="), "empty_parameter")
    assert [d["field"] for d in both["details"]] == ["query.tag", "query.tenant"]
    with Client(served.url) as client, pytest.raises(ApiError) as err:
        client.list_runs(workflow="")
    assert (err.value.status, err.value.code) == (400, "empty_parameter")
    assert len(httpx.get(f"{api}/runs?workflow=greet").json()["runs"]) == 1  # given: as before


def test_an_unknown_parameter_is_refused_naming_those_the_route_takes(served: Served) -> None:
    api = f"{served.url}/api/v1"
    error = _refused(httpx.get(f"{api}/runs?stauts=failed"), "unknown_parameter")
    assert error["message"] == (
        f'query.stauts: unknown parameter; did you mean "status"? (GET /api/v1/runs takes: '
        f"{RUNS_TAKES})"
    )
    assert error["details"] == [
        {
            "field": "query.stauts",
            "message": 'unknown parameter; did you mean "status"?',
            "type": "unknown_parameter",
        }
    ]
    camel = _refused(httpx.get(f"{api}/usage?groupBy=model"), "unknown_parameter")
    assert 'snake_case: send "group_by"' in camel["message"]
    assert "takes: workflow, tag, since, until, group_by, run, children" in camel["message"]
    queues = _refused(httpx.get(f"{api}/queues?all=1"), "unknown_parameter")
    assert queues["message"].endswith("(GET /api/v1/queues takes no query parameters)")
    sent = httpx.post(f"{api}/events?dry_run=1", json={"type": "x"})  # a POST's query too
    assert _refused(sent, "unknown_parameter")["details"][0]["field"] == "query.dry_run"
    with Client(served.url) as client:
        with pytest.raises(ApiError) as err:
            client.usage(grup_by="model")  # passed on as given: refused, not ignored
        assert (err.value.status, err.value.code) == (400, "unknown_parameter")
        assert 'did you mean "group_by"?' in err.value.message


def test_a_caller_without_a_token_is_told_that_first(
    secured: tuple[Served, dict[str, str]],
) -> None:
    served, tokens = secured
    url = f"{served.url}/api/v1/runs?stauts=failed&workflow="
    assert httpx.get(url).status_code == 401
    got = httpx.get(url, headers={"Authorization": f"Bearer {tokens['read']}"})
    assert _refused(got, "unknown_parameter")["details"][0]["field"] == "query.stauts"


def test_every_call_of_the_client_sends_only_what_its_route_takes(served: Served) -> None:
    """The client's parameters, every one given, against the server's check."""
    now = datetime.now(UTC)
    with Client(served.url) as client:
        ids = [client.start("greet", {"name": n}, tags=["t"], tenant="x") for n in "ab"]
        for wid in ids:
            _ended(client, wid)
        page = client.list_runs(
            status=RunStatus.COMPLETED, workflow="greet", tag="t", tenant="x",
            created_after=now - timedelta(hours=1), created_before=now + timedelta(hours=1),
            limit=1,
        )  # fmt: skip
        assert len(page.runs) == 1 and page.next_cursor is not None
        assert len(list(client.iter_runs(workflow="greet", limit=1))) == 2  # with its cursor
        assert client.events(ids[0], after=1)[0].seq == 2
        assert client.waits(ids[0]) == [] and client.ai_calls(ids[0], children=True) == []
        assert [e.type for e in client.stream_events(ids[0], after=0)][-1] == "workflow.completed"
        client.usage(
            workflow="greet", tag="t", since=now - timedelta(hours=1), until=now + timedelta(hours=1),
            group_by="model", run=ids[0], children=True,
        )  # fmt: skip
        assert [q.name for q in client.queues()] == ["slow"] and client.list_api_tokens() == []
        assert client.workers() and client.openapi()["paths"]


def _same_answer(served: Served, path: str, *, whole: bool = True) -> httpx.Response:
    """HEAD `path` answered as GET is: its status and headers (all but the date, or
    with `whole` false the type alone, for a page that shows the time), and no body."""
    got, head = httpx.get(served.url + path), httpx.head(served.url + path)
    assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
    assert head.content == b""
    if whole:
        assert {**head.headers, "date": ""} == {**got.headers, "date": ""}, path
    assert head.headers["content-type"] == got.headers["content-type"], path
    return head


def test_head_is_answered_as_get_without_the_body(served: Served) -> None:
    with Client(served.url) as client:
        done, wid = client.start("greet", {"name": "Ada"}), client.start("waits")
        _ended(client, done)
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
    for path in (
        "/api/v1/runs", f"/api/v1/runs/{done}", f"/api/v1/runs/{done}/events",
        f"/api/v1/runs/{wid}/waits", "/api/v1/queues", "/api/v1/usage", "/api/v1/openapi.json",
        "/api/v1/runs/nope", "/api/v1/runs?stauts=x", "/-/static/dash.css",
    ):  # fmt: skip
        _same_answer(served, path)
    for page in ("/runs", f"/runs/{wid}", "/queues", "/metrics"):
        assert _same_answer(served, page, whole=False).status_code == 200
    assert _same_answer(served, "/api/v1/events").status_code == 405  # POST only, as for GET
    # the event stream of a waiting run would go on as long as it waits: a HEAD ends
    stream = httpx.head(f"{served.url}/api/v1/runs/{wid}/events/stream", timeout=60)
    assert stream.status_code == 200 and stream.content == b""
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert httpx.get(f"{served.url}/api/v1/runs/{wid}").status_code == 200  # still serving
    assert "Traceback" not in served.log


def test_a_parameter_given_twice_is_refused_naming_it(served: Served) -> None:
    # before: ?status=failed&status=cancelled listed the cancelled runs alone
    got = httpx.get(f"{served.url}/api/v1/runs?status=failed&status=cancelled")
    error = _refused(got, "repeated_parameter")
    assert "query.status: given more than once" in error["message"], error
    assert httpx.get(f"{served.url}/api/v1/runs?status=failed&limit=5").status_code == 200
