"""The API walked as a service in another language would use it, against a real
`tether serve`: a 401 says how to authenticate, a body that is no JSON object is told
what to send, and the Python client reads a proxy's error page as one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tether import AsyncClient, Client
from tether.server import ApiError
from tether.server._wire import error_of

from ._serve import Served, answering, serving


def test_a_401_names_the_bearer_scheme(secured: tuple[Served, dict[str, str]]) -> None:
    """RFC 9110: a 401 carries WWW-Authenticate; RFC 6750 says why a token was refused
    (`invalid_token`), so an HTTP library can tell a missing token from a bad one."""
    served, tokens = secured
    url = served.url + "/api/v1/runs"
    none = httpx.get(url)
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="tether"'
    bad = httpx.get(url, headers={"Authorization": "Bearer tth_nope"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == 'Bearer realm="tether", error="invalid_token"'
    # answered before routing (an idempotent POST): the same header
    keyed = httpx.post(
        url,
        json={"workflow": "waits"},
        headers={"Authorization": "Bearer tth_nope", "Idempotency-Key": "k"},
    )
    assert keyed.status_code == 401, keyed.text
    assert keyed.json()["error"]["code"] == "invalid_token"
    assert keyed.headers["www-authenticate"] == 'Bearer realm="tether", error="invalid_token"'
    # a token that is let in but may not do this: a 403, no challenge
    read = httpx.post(
        url, json={"workflow": "waits"}, headers={"Authorization": f"Bearer {tokens['read']}"}
    )
    assert read.status_code == 403
    assert "www-authenticate" not in read.headers


@pytest.mark.parametrize(
    ("body", "came"),
    [
        (b"", "no body"),
        (b"null", "no body"),
        (b"[1, 2]", "a JSON array"),
        (b'"greet"', "a JSON string"),
        (b"7", "a JSON number"),
    ],
)
def test_a_body_that_is_no_object_is_told_to_send_one(
    served: Served, body: bytes, came: str
) -> None:
    """FastAPI said "body: Field required" of an empty body and "Input should be a valid
    dictionary or object to extract fields from" of an array: neither said what came
    nor what to send."""
    r = httpx.post(
        served.url + "/api/v1/runs", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert "the body must be a JSON object" in error["message"]
    assert came in error["message"]
    assert "workflow, input" in error["message"]  # the fields to send
    assert error["details"][0]["field"] == "body"


def test_an_optional_body_that_is_no_object_is_told_too(served: Served) -> None:
    r = httpx.post(
        served.url + "/api/v1/runs/r/cancel",
        content=b"[]",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "a JSON array" in message and "reason, compensate" in message


PROXY_PAGE = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head><body>"
    "<center><h1>503 Service Temporarily Unavailable</h1></center><hr>"
    "<center>nginx: mise à jour</center></body></html>"
).encode("latin-1")


@pytest.fixture
def proxy() -> Iterator[str]:
    """A proxy in front of a tether server that is down: 503 and its own page, in
    Latin-1 (not UTF-8), to every request."""
    with serving(answering("text/html; charset=iso-8859-1", PROXY_PAGE, 503)) as url:
        yield url


def _says_retry(error: ApiError) -> None:
    assert error.status == 503
    assert error.code == "http_error"
    message = error.message
    assert message.startswith("HTTP 503 Service Unavailable, not an error of tether's API")
    assert "<html>" not in message  # its words, not its markup
    assert "503 Service Temporarily Unavailable" in message
    assert "retry later" in message


def test_the_client_reads_a_proxys_503_page_as_such(proxy: str) -> None:
    """It was the page's raw HTML as the message, and an event stream's page in Latin-1
    raised a bare UnicodeDecodeError instead of an `ApiError`."""
    with Client(proxy) as client:
        with pytest.raises(ApiError) as listed:
            client.list_runs()
        _says_retry(listed.value)
        with pytest.raises(ApiError) as started:
            client.start("greet", {"name": "a"}, idempotency_key="k")
        _says_retry(started.value)
        with pytest.raises(ApiError) as streamed:
            list(client.stream_events("r"))
        _says_retry(streamed.value)


async def test_the_async_client_reads_a_proxys_503_page_as_such(proxy: str) -> None:
    async with AsyncClient(proxy) as client:
        with pytest.raises(ApiError) as listed:
            await client.list_runs()
        _says_retry(listed.value)
        with pytest.raises(ApiError) as streamed:
            async for _ in client.stream_events("r"):
                pass
        _says_retry(streamed.value)


def test_a_4xx_page_not_tethers_points_to_the_url() -> None:
    """Not a 5xx: nothing to wait for; the URL is likely wrong."""
    error = error_of(404, "<h1>Not Found</h1>", "text/html")
    assert error.message == (
        "HTTP 404 Not Found, not an error of tether's API (Content-Type 'text/html': "
        "'Not Found'); check the URL is the one `tether serve` prints (e.g. "
        "http://127.0.0.1:8000)"
    )
