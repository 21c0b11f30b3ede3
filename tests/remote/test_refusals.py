"""What answers a tenant's url when it is not a tenant answering: a redirect, a page
that is not tether's, a rate limit, a refusal of the wrong shape. Each says what it
was, and only a passing one (429) is tried again."""

from __future__ import annotations

import pytest

import tether
from tether import RunStatus
from tether.remote import RemoteInvocationLimitError, RemoteRefusedError

from ._http import serve
from ._procs import SECRET


def _refused(app: tether.App, head: bytes, body: bytes, wid: str) -> tuple[str, list[int]]:
    """The message the run failed with, and the sizes of the requests sent."""
    server, url, sizes = serve(head, body)
    try:
        flow = app.remote_workflow(wid, url=url, secret=SECRET, max_invocations=2,
                                   retry_delay=0.01)  # fmt: skip
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow, workflow_id=wid)
    finally:
        server.shutdown()
        server.server_close()
    assert app.get_record(wid).status is RunStatus.FAILED
    return str(raised.value), sizes


def test_a_redirect_names_where_to(app: tether.App) -> None:
    # a handler mounted at /tether is redirected from /tether to /tether/ (Starlette's
    # trailing slash): the run failed with "(307 http_error): " and nothing more
    head = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://tenant.example/tether/"
    message, sizes = _refused(app, head, b"", "moved")
    assert "(307 redirected)" in message
    assert "redirected it to 'http://tenant.example/tether/'" in message
    assert "register the remote workflow with that url=" in message
    assert len(sizes) == 1


def test_a_page_that_is_not_a_tenants_says_so(app: tether.App) -> None:
    head = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html"
    message, _ = _refused(app, head, b"<h1>Not Found</h1>", "lost")
    assert "(404 http_error): <h1>Not Found</h1>" in message
    assert "is tether.remote.handler served at this url?" in message


def test_a_refusal_whose_error_is_not_an_object_is_still_a_refusal(app: tether.App) -> None:
    # {"error": "..."}: AttributeError ('str' object has no attribute 'get') from the
    # middle of reading the answer, the run failed with it
    head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"
    message, _ = _refused(app, head, b'{"error": "no such thing"}', "odd")
    assert '(400 http_error): {"error": "no such thing"}' in message


def test_a_rate_limit_is_tried_again(app: tether.App) -> None:
    # 429 comes from a limiter in front of the tenant, and passes: it failed the run
    # at once as a refusal
    server, url, sizes = serve(b"HTTP/1.1 429 Too Many Requests", b"slow down")
    try:
        flow = app.remote_workflow("busy", url=url, secret=SECRET, max_invocations=3,
                                   retry_delay=0.01)  # fmt: skip
        with pytest.raises(RemoteInvocationLimitError, match="answered 429: slow down"):
            app.run(flow, workflow_id="busy-1")
    finally:
        server.shutdown()
        server.server_close()
    assert len(sizes) == 3
    rec = app.get_record("busy-1")
    assert [e.type for e in rec.events].count("remote.unanswered") == 3
