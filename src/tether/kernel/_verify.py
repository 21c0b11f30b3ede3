"""Checking a signed delivery, for a receiver of `WebhookSink` (and tether's own
``/hooks`` endpoint and remote tenants, which accept the same signature).

Every receiver otherwise writes the same five checks by hand, and the ones that
matter are the easy ones to get wrong: the raw body rather than JSON dumped
again, `hmac.compare_digest` rather than ``==``, a timestamp window both ways,
header names in any case, and several secrets while one is rotated.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidArgumentError, WebhookSignatureError
from ._sinks import sign

__all__ = ["check_signed", "verify"]

TIMESTAMP = "X-Tether-Timestamp"
SIGNATURE = "X-Tether-Signature"
_MAX_DIGITS = 15  # unix seconds have 10 digits until the year 2286


def verify(
    secret: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivered event as a dict, once its signature and timestamp check out.

    `secret` is the webhook's secret, or several (accepted while one is rotated);
    `headers` are the request's headers in any case; `body` is the raw body as
    received (names and values as str, or bytes as an ASGI scope holds them). Missing
    headers, a timestamp that is no unix seconds, a signature that does not match, a
    timestamp more than `tolerance` seconds from `now` (default: this machine's clock)
    either way, or a body that is no JSON object raise `WebhookSignatureError`, whose
    `code` says which; arguments that cannot be checked (an empty secret, headers
    that are no mapping) raise `InvalidArgumentError`. Delivery is at
    least once: key out repeats on the event's ``X-Tether-Delivery`` header.
    """
    check_signed(secret, headers, body, tolerance=tolerance, now=now)
    try:
        event = json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookSignatureError(
            "bad_body", f"the signed body is not JSON ({exc}); was it sent by tether?"
        ) from None
    if not isinstance(event, dict):
        raise WebhookSignatureError(
            "bad_body", f"the signed body is JSON {type(event).__name__}, not an event object"
        )
    return event


def check_signed(
    secrets: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> str:
    """The request's signature if it is one of `secrets`' (one secret, or several while
    one is rotated) and fresh; else `WebhookSignatureError`. Whether it was seen
    before is for the caller. `headers` and `tolerance` as `verify` takes them."""
    many = _secrets(secrets)
    tolerance, clock = _window(tolerance, now)
    folded = _folded(headers)
    ts, given = folded.get(TIMESTAMP.lower()), folded.get(SIGNATURE.lower())
    if not ts or not given:
        raise WebhookSignatureError("signature_missing", f"send {TIMESTAMP} and {SIGNATURE}")
    if not (ts.isascii() and ts.isdigit()):
        raise WebhookSignatureError("bad_timestamp", f"{TIMESTAMP} must be unix seconds")
    if not given.isascii() or not any(
        hmac.compare_digest(sign(secret, ts, body), given) for secret in many
    ):
        raise WebhookSignatureError("bad_signature", "the signature does not match the body")
    # compared as text first: a huge number of seconds is stale, not a float overflow
    if len(ts.lstrip("0")) > _MAX_DIGITS or abs(clock - int(ts)) > tolerance:
        raise WebhookSignatureError(
            "stale_timestamp",
            f"the timestamp is more than {tolerance:g}s from the receiver's clock",
        )
    return given


def _window(tolerance: object, now: object) -> tuple[float, float]:
    """`tolerance` and the receiver's clock (`now`, else this machine's), each a finite
    number: a NaN `now` was no number any timestamp is far from, and every stale
    request passed; a str one was a bare TypeError."""
    if not _real(tolerance) or not 0 < tolerance < math.inf:  # type: ignore[operator]
        raise InvalidArgumentError(
            f"tolerance must be a number of seconds > 0, got {tolerance!r}; e.g. 300"
        )
    if now is None:
        return float(tolerance), time.time()  # type: ignore[arg-type]
    if not _real(now) or not math.isfinite(now):  # type: ignore[arg-type]
        raise InvalidArgumentError(
            f"now must be the receiver's clock in unix seconds, got {now!r}; e.g. "
            "time.time(), or leave it out"
        )
    return float(tolerance), float(now)  # type: ignore[arg-type]


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _folded(headers: object) -> dict[str, str]:
    """The request's headers by lower-case name. Bytes (an ASGI scope's raw headers) are
    read as latin-1, as HTTP sends them; anything else is refused saying what to pass:
    a list of pairs or a list as a value was a bare AttributeError. Anything with
    `items()` is taken (Flask's headers are no `Mapping`)."""
    items = getattr(headers, "items", None)
    if not callable(items) or isinstance(headers, type):
        raise InvalidArgumentError(
            f"headers must be the request's headers as a mapping of names to values, got "
            f"{type(headers).__name__}; e.g. request.headers, or dict(pairs) for a list"
        )
    folded: dict[str, str] = {}
    for name, value in items():
        key, text = _text(name), _text(value)
        if key is None or text is None:
            raise InvalidArgumentError(
                "headers must map header names to their values as str (or bytes), got "
                f"{name!r}: {type(value).__name__}; pass one value per header, e.g. "
                "{name: values[0]}"
            )
        folded[key.lower()] = text
    return folded


def _text(value: object) -> str | None:
    """A header's name or value as text (bytes as latin-1), or None if it is neither."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return value if isinstance(value, str) else None


def _secrets(secret: str | bytes | Iterable[str | bytes]) -> tuple[str | bytes, ...]:
    """One secret or several, each non-empty: an unset one must not accept anything."""
    many = (
        (secret,)
        if isinstance(secret, str | bytes) or not isinstance(secret, Iterable)
        else tuple(secret)
    )
    if not many or not all(isinstance(s, str | bytes) and s for s in many):
        raise InvalidArgumentError(
            f"secret must be a non-empty str or bytes (or several), got {secret!r}; "
            "is the webhook's secret set where this reads it?"
        )
    return many
