"""What the HTTP trackers (GitHub, Linear) share: one request with tether's errors.

httpx stays inside this module and the adapters: the dispatcher sees
`TrackerError` with Symphony's codes (`tracker_request` for a connection that
failed, `tracker_status` for a refused request, `tracker_response` for an
answer that is not what the API promises, `tracker_rate_limited` with
`retry_after` seconds). A rate limit is read from the headers the providers
send: ``retry-after`` (seconds or an HTTP date), else ``x-ratelimit-reset`` (GitHub, epoch
seconds) or ``x-ratelimit-requests-reset`` (Linear, epoch milliseconds) when
no requests remain; a GitHub 403 whose message names a rate limit (its secondary
limit, which may carry no header) waits `DEFAULT_RATE_LIMIT_WAIT`. A wait is at
most `MAX_RETRY_AFTER` (a day; the error says when it was capped). A 401 or another
403 says to check ``tracker.api_key``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from .._errors import MAX_RETRY_AFTER, TrackerError, asked, capped_wait

__all__ = ["DEFAULT_RATE_LIMIT_WAIT", "rate_limit_wait", "request_json"]

DEFAULT_RATE_LIMIT_WAIT = 60.0  # seconds, when a provider says "slow down" without saying how long
TIMEOUT = 30.0


def _number(value: str | None) -> float | None:
    """A header's number; None if absent or not a finite number (``inf`` or ``nan``
    from a broken proxy would make a cooldown that never ends or cannot be stored)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _retry_after(value: str | None, now: float) -> float | None:
    """``retry-after`` in seconds: RFC 9110 allows a delay or an HTTP date (which
    proxies and CDNs send); None if absent or neither. Digits beyond a float's range
    are an endless wait (capped by the caller), not a missing header."""
    digits = (value or "").strip()
    if digits.isdigit():  # RFC 9110's delay-seconds, of any length
        return float(digits) if len(digits) <= 300 else math.inf
    seconds = _number(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.replace(tzinfo=when.tzinfo or UTC).timestamp() - now  # HTTP dates are GMT


def rate_limit_wait(
    status: int, headers: Mapping[str, str], now: float | None = None
) -> float | None:
    """Seconds to wait if this answer is a rate limit, else None. A 429 always is; a
    403 (GitHub's secondary and primary limits) only with ``retry-after`` or no
    requests remaining. At most `MAX_RETRY_AFTER`."""
    return capped_wait(_asked_wait(status, headers, now), f"HTTP {status}")


def _asked_wait(status: int, headers: Mapping[str, str], now: float | None) -> float | None:
    """What the headers ask, uncapped (it may be infinite)."""
    now = time.time() if now is None else now
    after = _retry_after(headers.get("retry-after"), now)
    remaining = _number(headers.get("x-ratelimit-remaining"))
    if remaining is None:
        remaining = _number(headers.get("x-ratelimit-requests-remaining"))
    limited = status == 429 or (status == 403 and (after is not None or remaining == 0))
    if not limited:
        return None
    if after is not None:
        return max(after, 0.0)
    reset = _number(headers.get("x-ratelimit-reset"))
    if reset is None:
        ms = _number(headers.get("x-ratelimit-requests-reset"))
        reset = ms / 1000 if ms is not None else None
    if reset is not None:
        return max(reset - now, 0.0)
    return DEFAULT_RATE_LIMIT_WAIT


async def request_json(
    client: Any, method: str, url: str, *, what: str, graphql: bool = False, **kwargs: Any
) -> tuple[Any, Any]:
    """Send one request on an `httpx.AsyncClient`; (decoded JSON body, response).
    404 and 410 come back with a None body (the caller decides what "gone" means);
    with `graphql`, so does a 400 whose body is JSON (GraphQL errors, read by the caller)."""
    import httpx

    try:
        response = await client.request(method, url, timeout=TIMEOUT, **kwargs)
    except httpx.LocalProtocolError:
        # never its text: it quotes the header it refused, the API key among them
        raise TrackerError(
            f"{what}: the request could not be sent: a header holds a character HTTP "
            "forbids (a line break or control character inside tracker.api_key?)",
            code="tracker_request",
        ) from None
    except httpx.HTTPError as exc:
        raise TrackerError(
            f"{what}: the request failed ({type(exc).__name__}: {exc})", code="tracker_request"
        ) from None
    wait = _asked_wait(response.status_code, response.headers, None)
    if wait is None and response.status_code == 403 and "rate limit" in _message(response).lower():
        # GitHub's secondary limit may come without a header: wait a minute, as its docs say
        wait = DEFAULT_RATE_LIMIT_WAIT
    if wait is not None:
        capped = "" if wait <= MAX_RETRY_AFTER else f"; it asked for {asked(wait)}, capped"
        wait = capped_wait(wait, what)
        raise TrackerError(
            f"{what}: rate limited for {wait:.0f} s (HTTP {response.status_code}{capped})",
            code="tracker_rate_limited",
            retry_after=wait,
        )
    if response.status_code in (404, 410):
        return None, response
    if graphql and response.status_code == 400:
        try:
            return response.json(), response
        except ValueError:
            pass
    if response.status_code >= 400:
        raise TrackerError(
            f"{what}: HTTP {response.status_code} {_message(response)}"
            + _HINTS.get(response.status_code, ""),
            code="tracker_status",
            status=response.status_code,
        )
    if response.status_code == 204 or not response.content:
        return {}, response
    try:
        return response.json(), response
    except ValueError:
        raise TrackerError(f"{what}: the answer is not JSON", code="tracker_response") from None


_HINTS = {
    401: " (the token was refused: is tracker.api_key set to a current, valid token?)",
    403: " (the token may not do this: does tracker.api_key have access to it?)",
}


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return str(body)[:200]
