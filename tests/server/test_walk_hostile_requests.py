"""The API walked as a hostile (or merely unusual) HTTP client would, against a real
`tether serve`: OPTIONS, methods a path does not take, a JSON body declared in
another charset than UTF-8, and paths below the static files."""

from __future__ import annotations

import httpx
import pytest

from ._serve import Served


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/runs", "GET, HEAD, OPTIONS, POST"),  # two routes: both named
        ("/api/v1/runs/some-run", "GET, HEAD, OPTIONS"),
        ("/api/v1/events", "OPTIONS, POST"),
        ("/api/v1/api-tokens/abc", "DELETE, OPTIONS"),
        ("/-/static/dash.css", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_is_answered_with_the_methods_the_path_takes(
    served: Served, path: str, allowed: str
) -> None:
    """RFC 9110: OPTIONS asks what a path takes. It was a 405 saying OPTIONS was not
    allowed, to a client that asked just that."""
    got = httpx.options(served.url + path)
    assert got.status_code == 204, got.text
    assert got.headers["allow"] == allowed
    assert got.content == b""


def test_options_on_a_path_no_route_takes_is_still_not_found(served: Served) -> None:
    got = httpx.options(f"{served.url}/api/v1/no-such-route")
    assert got.status_code == 404
    assert got.json()["error"]["code"] == "not_found"


def test_a_405_below_the_static_files_names_the_methods_they_take(served: Served) -> None:
    """The static files are a mounted app: the methods were looked up among the app's
    routes with the mount's scope, matched none, and the 405 had an empty ``Allow``
    and said the path "takes " nothing."""
    got = httpx.post(f"{served.url}/-/static/dash.css")
    assert got.status_code == 405
    assert got.headers["allow"] == "GET, HEAD, OPTIONS"
    assert got.json()["error"]["message"] == (
        "POST is not allowed at /-/static/dash.css; it takes GET, HEAD, OPTIONS"
    )


def test_a_path_not_found_below_the_static_files_points_at_the_api(served: Served) -> None:
    """It said the API's routes were under /-/static/api/v1/, where nothing is."""
    got = httpx.get(f"{served.url}/-/static/..%2Fsecret.py")
    assert got.status_code == 404
    message = got.json()["error"]["message"]
    assert "the API's routes are under /api/v1/ and listed in /api/v1/openapi.json" in message


@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", "windows-1252", "no-such-charset"])
def test_a_json_body_in_another_charset_is_refused_as_such(served: Served, charset: str) -> None:
    """JSON is UTF-8 (RFC 8259): a body declared Latin-1 was read as UTF-8 anyway, an
    "é" in it refused as "not UTF-8 text" and an ASCII one taken as if it were UTF-8."""
    for body in ('{"type": "caf\u00e9"}'.encode("latin-1"), b'{"type": "plain"}'):
        got = httpx.post(
            f"{served.url}/api/v1/events",
            content=body,
            headers={"content-type": f"application/json; charset={charset}"},
        )
        assert got.status_code == 415, got.text
        error = got.json()["error"]
        assert error["code"] == "unsupported_charset"
        assert f"charset {charset!r}" in error["message"]
        assert "send it encoded as UTF-8" in error["message"]


@pytest.mark.parametrize(
    ("charset", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF-8", "utf-8"),
        ("utf8", "utf-8"),
        ('"utf-8"', "utf-8"),
        ("utf-16", "utf-16"),
        ("utf-16le", "utf-16-le"),
        ("utf-32", "utf-32"),
    ],
)
def test_a_json_body_in_a_charset_json_is_written_in_is_read(
    served: Served, charset: str, codec: str
) -> None:
    body = '{"workflow": "greet", "input": {"name": "Zo\u00eb \u2603"}}'.encode(codec)
    got = httpx.post(
        f"{served.url}/api/v1/runs",
        content=body,
        headers={"content-type": f"application/json; charset={charset}"},
    )
    assert got.status_code == 201, got.text
    record = httpx.get(f"{served.url}/api/v1/runs/{got.json()['workflow_id']}").json()
    assert record["input"] == {"name": "Zo\u00eb \u2603"}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_body_that_is_not_utf8_says_so(served: Served, content_type: str) -> None:
    got = httpx.post(
        f"{served.url}/api/v1/events",
        content='{"type": "caf\u00e9"}'.encode("latin-1"),
        headers={"content-type": content_type},
    )
    assert got.status_code == 422, got.text
    assert "not UTF-8 text (byte 0xe9 at offset 13)" in got.json()["error"]["message"]
