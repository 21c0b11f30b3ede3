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
    received. A signature that does not match, a timestamp more than `tolerance`
    seconds from `now` (default: this machine's clock) either way, or missing
    headers raise `WebhookSignatureError`, whose `code` says which. Delivery is at
    least once: key out repeats on the event's ``X-Tether-Delivery`` header.
    """
    check_signed(_secrets(secret), headers, body, tolerance=tolerance, now=now)
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
    secrets: tuple[str | bytes, ...],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> str:
    """The request's signature if it is one of `secrets`' and fresh; else
    `WebhookSignatureError`. Whether it was seen before is for the caller."""
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise InvalidArgumentError(f"tolerance must be > 0 seconds, got {tolerance!r}")
    folded = {str(k).lower(): v for k, v in headers.items()}
    ts, given = folded.get(TIMESTAMP.lower()), folded.get(SIGNATURE.lower())
    if not ts or not given:
        raise WebhookSignatureError("signature_missing", f"send {TIMESTAMP} and {SIGNATURE}")
    if not (ts.isascii() and ts.isdigit()):
        raise WebhookSignatureError("bad_timestamp", f"{TIMESTAMP} must be unix seconds")
    if not given.isascii() or not any(
        hmac.compare_digest(sign(secret, ts, body), given) for secret in secrets
    ):
        raise WebhookSignatureError("bad_signature", "the signature does not match the body")
    clock = time.time() if now is None else now
    # compared as text first: a huge number of seconds is stale, not a float overflow
    if len(ts.lstrip("0")) > _MAX_DIGITS or abs(clock - int(ts)) > tolerance:
        raise WebhookSignatureError(
            "stale_timestamp",
            f"the timestamp is more than {tolerance:g}s from the receiver's clock",
        )
    return given


def _secrets(secret: str | bytes | Iterable[str | bytes]) -> tuple[str | bytes, ...]:
    """One secret or several, each non-empty: an unset one must not accept anything."""
    many = (
        (secret,)
        if isinstance(secret, str | bytes) or not isinstance(secret, Iterable)
        else tuple(secret)
    )
    if not many or not all(isinstance(s, str | bytes) and s for s in many):
        raise InvalidArgumentError(
            f"verify: secret must be a non-empty str or bytes (or several), got {secret!r}; "
            "is the webhook's secret set where this reads it?"
        )
    return many
