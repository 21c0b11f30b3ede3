"""Errors of the HTTP API, on both sides of the wire.

The server answers every error as ``{"error": {"code", "message", "details"}}``;
`answer_for` chooses the status and code for each of tether's own errors. The
clients raise `ApiError` (a `TetherError`) carrying the same three fields and
the HTTP status::

    TetherError
    └── ApiError            the server answered an error (status, code, message, details)
        └── ApiUnreachable  no answer: the server is down, or the connection failed
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import (
    BatchesOutError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    InvalidArgumentError,
    NotSerializableError,
    RunAlreadyRunningError,
    RunFinishedError,
    RunNotFoundError,
    StoreError,
    TetherError,
    TokenCompletedError,
    TokenNotFoundError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
)

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "answer_for",
    "challenge",
    "details_for",
    "error_body",
    "named",
    "unreadable_json",
]


class ApiError(TetherError):
    """The tether server answered with an error."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{message} (HTTP {status}, {code})")


class ApiUnreachable(ApiError):
    """No answer from the tether server (refused, timed out, cut).

    Code ``unreachable``: the request never reached it (refused, no connection).
    Code ``no_answer`` (`sent` is the request, e.g. ``"POST /api/v1/runs"``): it was
    sent, and the answer never came (timed out, cut), so the server may have acted
    on it; a POST sent again with the same ``idempotency_key`` acts once."""

    def __init__(self, url: str, reason: str, *, sent: str | None = None) -> None:
        if sent is None:
            super().__init__(0, "unreachable", f"cannot reach the tether server at {url}: {reason}")
            return
        then = (
            "it may have done it: send it again with the same idempotency_key to have it "
            "done once (without one it may be done twice)"
            if sent.startswith("POST")
            else "send it again"
        )
        super().__init__(
            0,
            "no_answer",
            f"the tether server at {url} was sent {sent} and gave no answer ({reason}); "
            f"{then}, or give the client a longer timeout= if the server is slow",
        )


# most specific first: the first class that matches answers
_ANSWERS: tuple[tuple[type[BaseException], int, str], ...] = (
    (RunNotFoundError, 404, "run_not_found"),
    (TokenNotFoundError, 404, "token_not_found"),
    (WorkflowNotFoundError, 404, "workflow_not_found"),
    (IdempotencyConflictError, 409, "idempotency_conflict"),
    (WorkflowIdConflictError, 409, "workflow_id_conflict"),
    (IdempotencyInProgressError, 409, "idempotency_in_progress"),
    (RunAlreadyRunningError, 409, "run_already_running"),
    (RunFinishedError, 409, "run_finished"),
    (BatchesOutError, 409, "batches_out"),
    # a token completed again conflicts with what is recorded: not a malformed request
    (TokenCompletedError, 409, "token_already_completed"),
    (NotSerializableError, 422, "not_serializable"),
    (InvalidArgumentError, 422, "invalid_argument"),
    (StoreError, 503, "store_unavailable"),
    (TetherError, 400, "bad_request"),
)


def answer_for(exc: TetherError) -> tuple[int, str]:
    """(HTTP status, error code) for one of tether's errors."""
    for kind, status, code in _ANSWERS:
        if isinstance(exc, kind):
            return status, code
    return 400, "bad_request"


def details_for(exc: TetherError) -> Any:
    """The facts of an error a client acts on, as its answer's details: for a token
    completed again, when and with what, so a client retrying after a lost answer can
    tell its own completion from another's. None for the others."""
    if not isinstance(exc, TokenCompletedError):
        return None
    payload = None if exc.payload is None else json.loads(exc.payload)
    at = None if exc.completed_at is None else exc.completed_at.isoformat()
    return {
        "token_id": exc.token_id,
        "workflow_id": exc.workflow_id,
        "status": exc.status,
        "completed_at": at,
        "payload": payload,
    }


def challenge(status: int, code: str) -> dict[str, str]:
    """The ``WWW-Authenticate`` header a 401 must carry (RFC 9110): how to authenticate
    (a bearer token) and, for a token refused, why (RFC 6750's ``invalid_token``), so
    an HTTP library of any language can tell a missing token from a bad one."""
    if status != 401:
        return {}
    if code == "invalid_token":
        return {"WWW-Authenticate": 'Bearer realm="tether", error="invalid_token"'}
    return {"WWW-Authenticate": 'Bearer realm="tether"'}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def named(problems: list[dict[str, Any]]) -> str:
    """The first problems of a refused request, as its message names them."""
    return "; ".join(f"{p['field']}: {p['message']}" for p in problems[:3])


def unreadable_json(cause: BaseException) -> str:
    """Why a body could not be read as JSON (`cause`, what ``json.loads`` raised), in
    the words of the answer's message: a request's body and a webhook's alike."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"not valid JSON: not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at "
            f"offset {cause.start}); send it encoded as UTF-8"
        )
    if isinstance(cause, RecursionError):
        return "not valid JSON: arrays and objects nested too deeply to read; flatten it"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "not valid JSON: a number has too many digits to read; send it as a string"
    return f"not valid JSON: {cause}"
