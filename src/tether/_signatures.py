"""Signed requests: webhooks in (``POST /hooks/{name}``, signed the way tether's
`WebhookSink` signs, so one tether can deliver its events to another) and a
remote workflow's invocations. Shared by `tether.server` and `tether.remote`,
so it sits beside them, not inside either.

A request carries ``X-Tether-Timestamp`` (unix seconds) and
``X-Tether-Signature`` (``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." +
body``, see `tether.kernel.sign`). It is accepted (`tether.kernel.check_signed`) when the signature matches
one of the hook's secrets (several: rotate without downtime), the timestamp is
within `tolerance` seconds of now (either way: clocks drift), and the same
signature was not accepted before. The last check needs the store: a
signature is remembered until its timestamp leaves the window, after which
the timestamp check alone refuses it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidArgumentError, WebhookSignatureError
from .kernel import check_signed

__all__ = ["HookRejected", "Webhook", "check_signature"]

TIMESTAMP = "X-Tether-Timestamp"
SIGNATURE = "X-Tether-Signature"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Webhook:
    """A webhook endpoint: its name (the path), its secret(s), and the event type its
    payloads are sent as (default: the name), matched by runs waiting with
    ``wf.wait_for_event(type)``."""

    name: str
    secrets: tuple[str, ...]
    event: str | None = None
    tolerance: float = 300.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidArgumentError(
                f"webhook name {self.name!r} must be letters, digits, '_', '.' or '-'"
            )
        if isinstance(self.secrets, str) or not self.secrets or not all(self.secrets):
            raise InvalidArgumentError(f"webhook {self.name!r} needs non-empty secret(s)")
        if not math.isfinite(self.tolerance) or self.tolerance <= 0:
            raise InvalidArgumentError(f"tolerance must be > 0 seconds, got {self.tolerance!r}")

    @property
    def event_type(self) -> str:
        return self.event or self.name


class HookRejected(Exception):
    """A webhook request that is not accepted: the status and code to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


def check_signature(hook: Webhook, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The request's signature if it is one of `hook`'s and fresh; else `HookRejected`.
    (Whether it was seen before is for the caller to ask the store.)"""
    try:
        return check_signed(hook.secrets, headers, body, tolerance=hook.tolerance, now=now)
    except WebhookSignatureError as exc:
        raise HookRejected(401, exc.code, str(exc)) from None
