"""The clients when a request goes unanswered, or the server fails: a request sent
whose answer never came is not a server that could not be reached, and a failure
names the server that failed."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tether import AsyncClient, Client
from tether.server import ApiError, ApiUnreachable
from tether.testing import eventually_sync

from ._serve import Served, answering, serving


@contextmanager
def silent(then_close: bool) -> Iterator[tuple[str, threading.Event]]:
    """A real server on a free loopback port that reads a request and never answers
    it (or, `then_close`, closes the connection at once); the event is set once it has
    read a request."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    got, over = threading.Event(), threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            if over.is_set():  # the test's own connection, to wake it: the test is over
                conn.close()
                return
            conn.recv(65536)
            got.set()
            if then_close:
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{address[1]}", got
    finally:
        over.set()
        socket.create_connection(address).close()
        thread.join(10)
        listener.close()
        for conn in held:
            conn.close()


def test_a_post_whose_answer_never_came_says_it_may_have_been_done() -> None:
    """It said "cannot reach the tether server at ...: timed out", though the request
    had reached it: `tether serve` had started the run, and a retry started another."""
    with silent(then_close=False) as (url, got), Client(url, timeout=0.5) as client:
        with pytest.raises(ApiUnreachable) as lost:
            client.start("greet", {"name": "a"})
        assert got.is_set()
    error = lost.value
    assert error.code == "no_answer" and error.status == 0
    assert f"the tether server at {url} was sent POST /api/v1/runs" in error.message
    assert "read timed out after 0.5 s" in error.message
    assert "same idempotency_key" in error.message and "timeout=" in error.message


async def test_a_get_cut_before_its_answer_is_no_answer_too() -> None:
    with silent(then_close=True) as (url, got):
        async with AsyncClient(url) as client:
            with pytest.raises(ApiUnreachable) as cut:
                await client.list_runs()
            with pytest.raises(ApiUnreachable) as streamed:
                async for _ in client.stream_events("r"):
                    pass
        assert got.is_set()
    assert cut.value.code == "no_answer"
    assert f"{url} was sent GET /api/v1/runs and gave no answer" in cut.value.message
    assert "idempotency_key" not in cut.value.message  # a GET does nothing: send it again
    assert "GET /api/v1/runs/r/events/stream" in streamed.value.message


def test_a_server_that_is_down_is_still_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        url = f"http://127.0.0.1:{taken.getsockname()[1]}"
    with Client(url) as client, pytest.raises(ApiUnreachable) as down:
        client.list_runs()
    assert down.value.code == "unreachable"
    assert down.value.message.startswith(f"cannot reach the tether server at {url}: ")


def test_a_stopped_tether_serve_took_the_post_the_retry_acts_once(served: Served) -> None:
    """A real `tether serve`, stopped (SIGSTOP) while the client waits: the client's
    POST is taken by the kernel and goes unanswered. The message's advice holds: sent
    again under the same key once the server is back, it starts one run."""
    with Client(served.url, timeout=1.0) as client:
        served.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(ApiUnreachable) as lost:
                client.start("counts", 1, idempotency_key="once")
        finally:
            served.proc.send_signal(signal.SIGCONT)
        assert lost.value.code == "no_answer", lost.value
        with Client(served.url) as again:

            def resent() -> str | None:
                try:
                    return again.start("counts", 1, idempotency_key="once")
                except ApiError as exc:  # the first, taken late, may still be answered
                    assert exc.code == "idempotency_in_progress", exc
                    return None

            first = eventually_sync(resent, timeout=30)
            assert again.start("counts", 1, idempotency_key="once") == first
            assert [r.workflow_id for r in again.list_runs(workflow="counts").runs] == [first]


TETHER_500 = json.dumps(
    {"error": {"code": "internal", "message": "the server failed (a bug)", "details": None}}
).encode()


@pytest.mark.parametrize(
    ("kind", "body", "status", "code"),
    [
        ("application/json", TETHER_500, 500, "internal"),
        ("text/html", b"<h1>Bad Gateway</h1>", 502, "http_error"),
        ("text/html", b"<h1>Not Found</h1>", 404, "http_error"),
    ],
)
def test_a_failure_or_a_page_not_tethers_names_the_request(
    kind: str, body: bytes, status: int, code: str
) -> None:
    """ "the server failed ... The server's log has the traceback" named no server, and
    a proxy's 502 page (or another program's 404) no address: with several servers,
    which one to look at was anyone's guess."""
    handler: type[http.server.BaseHTTPRequestHandler] = answering(kind, body, status)
    with serving(handler) as url, Client(url) as client:
        with pytest.raises(ApiError) as failed:
            client.get_record("r1")
        with pytest.raises(ApiError) as streamed:
            list(client.stream_events("r1"))
    for error in (failed.value, streamed.value):
        assert (error.status, error.code) == (status, code)
    assert f"GET {url}/api/v1/runs/r1" in failed.value.message
    assert f"GET {url}/api/v1/runs/r1/events/stream" in streamed.value.message
