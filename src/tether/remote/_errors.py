"""Errors of remote workflows.

The tree (under `tether.TetherError`)::

    RemoteError                      an invocation of a tenant went wrong
    ├── RemoteRefusedError           the tenant refused the request (4xx): the run fails
    │   └── RemoteVersionError       protocol or workflow version not served there
    ├── RemoteUnavailableError       no answer (network, 5xx, cut short): retried
    │   └── RemoteDeadlineError      no answer before the invocation's deadline
    ├── RemoteInvocationLimitError   the run used up its invocations: the run fails
    ├── RemoteTooLargeError          an invocation would exceed what a tenant reads
    └── RemoteWorkflowError          the workflow body failed on the tenant
"""

from __future__ import annotations

from typing import Any

from ..errors import TetherError

__all__ = [
    "RemoteDeadlineError",
    "RemoteError",
    "RemoteInvocationLimitError",
    "RemoteRefusedError",
    "RemoteTooLargeError",
    "RemoteUnavailableError",
    "RemoteVersionError",
    "RemoteWorkflowError",
]


class RemoteError(TetherError):
    """An invocation of a remote workflow's tenant went wrong."""


class RemoteRefusedError(RemoteError):
    """The tenant refused the invocation (a 4xx answer): `status`, `code`, `details`."""

    def __init__(self, url: str, status: int, code: str, message: str, details: Any) -> None:
        self.url, self.status, self.code, self.details = url, status, code, details
        super().__init__(f"the tenant at {url} refused the invocation ({status} {code}): {message}")


class RemoteVersionError(RemoteRefusedError):
    """The tenant does not serve this protocol version or this workflow version;
    `supported` lists the ones it does."""

    @property
    def supported(self) -> list[Any]:
        return listed(self.details, "supported") or listed(self.details, "versions")


def listed(details: Any, key: str) -> list[Any]:
    """The list a refusal's `details` hold under `key`, or none: a tenant of another
    make may send anything there (``{"versions": 5}`` failed the run with TypeError)."""
    value = details.get(key) if isinstance(details, dict) else None
    return list(value) if isinstance(value, list) else []


class RemoteUnavailableError(RemoteError):
    """No complete answer from the tenant (network error, 5xx, a cut stream); the
    invocation is tried again, steps it recorded kept: after `retry_after` seconds
    at the least, where the answer said so (a 429's or 503's ``Retry-After``)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteDeadlineError(RemoteUnavailableError):
    """The tenant gave no answer before the invocation's deadline."""


class RemoteInvocationLimitError(RemoteError):
    """The run reached its cap of invocations without ending."""

    def __init__(
        self, workflow_id: str, limit: int, last: str | None = None, fix: str | None = None
    ) -> None:
        self.workflow_id, self.limit = workflow_id, limit
        tail = f"; the last one: {last}" if last else ""
        fix = fix or "raise max_invocations= on app.remote_workflow if the workflow needs more"
        super().__init__(
            f"run {workflow_id!r} reached its cap of {limit} "
            f"invocation{'' if limit == 1 else 's'} without ending{tail} "
            f"({fix})"
        )


class RemoteTooLargeError(RemoteError):
    """An invocation would carry more than a tenant reads (`limit` bytes): the run's
    input, or its journal with the results of its steps, is too large. Raised on the
    orchestrator before sending, and on the tenant by the step whose result would make
    the next invocation too large (the step fails for good: a retry returns as much).
    Retrying cannot help, so the run fails; what it recorded before is kept."""

    FIX = (
        "every invocation sends the tenant the run's input, state and the results of "
        "all its completed steps: keep large values out of them (store them in a blob "
        "store, object storage or a file, and pass or return a reference: its key or URL)"
    )

    def __init__(self, message: str, size: int | None = None, limit: int | None = None) -> None:
        self.size, self.limit = size, limit
        super().__init__(message)

    @classmethod
    def of(cls, what: str, size: int, limit: int) -> RemoteTooLargeError:
        """`what` is `size` bytes, over `limit`: the message says so, and how to fix it."""
        return cls(f"{what} is {size:,} bytes, over the {limit:,} bytes an invocation of a "
                   f"remote workflow may carry; {cls.FIX}", size, limit)  # fmt: skip


class RemoteWorkflowError(RemoteError):
    """The workflow body raised on the tenant: `error_type` and the tenant's message."""

    def __init__(
        self, workflow_id: str, error: dict[str, Any] | None, hint: str | None = None
    ) -> None:
        error = error or {}
        self.workflow_id = workflow_id
        self.error_type = str(error.get("type", "Exception"))
        self.remote_error = error
        tail = f" ({hint})" if hint else ""
        said = (
            f"{self.error_type}: {error.get('message', '')}"
            if error
            else "it answered 'failed' without saying why (no error)"
        )
        super().__init__(f"run {workflow_id!r} failed on the tenant: {said}{tail}")
