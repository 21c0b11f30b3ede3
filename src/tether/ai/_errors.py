"""The AI layer's errors: what went wrong with a provider, a key, a budget."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..errors import InvalidArgumentError, TetherError
from ._types import Usage

if TYPE_CHECKING:
    from ._results import BatchResult

__all__ = [
    "BudgetExceededError",
    "MissingAPIKeyError",
    "ObjectValidationError",
    "ProviderError",
    "UnknownProviderError",
]


class ProviderError(TetherError):
    """A provider refused or failed a call.

    `retryable` is True for rate limits (429), server errors (5xx), timeouts,
    dropped connections, a body that is not JSON and a 200 carrying a
    server-side error; the step retries those, waiting at least
    `retry_after` seconds when the provider said so. Others (a bad request,
    a wrong key) fail the step at once: trying again cannot help. `model` is
    the model asked (None where no model was, e.g. a batch's poll).

    A ``retry-after`` given as an HTTP date is kept as `retry_at` (a time, not yet
    a wait): `wf.ai` turns it into `retry_after` seconds by the App's clock
    (`wait_from`), so a run driven on a fake clock waits what that clock says.

    `billed` is True for a 200 the call could not use (a body not JSON, not of the
    API's shape, an error or no result inside it), and for a timeout or a connection
    lost after the request may have gone out: the provider took the request and
    may have billed it, so the call log prices it from `usage`, what the body told
    of its tokens, or logs its cost as unknown, never as $0.

    `batch` is set on the error of a batch that ended failed, expired or cancelled:
    its outcomes, the completed requests' results (billed, and in the call log) and
    the others not ok with their error, for a workflow that catches it to use.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        request_id: str | None = None,
        model: str | None = None,
        retry_at: datetime | None = None,
        billed: bool = False,
        usage: Usage | None = None,
        batch: BatchResult | None = None,
    ) -> None:
        super().__init__(message)
        self.batch = batch
        self.billed = billed
        self.usage = usage
        self.model = model
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.retry_at = retry_at
        self.request_id = request_id

    def wait_from(self, now: datetime) -> ProviderError:
        """Itself, with a `retry_at` the provider gave read as `retry_after` seconds
        from `now` (the time of the clock the call runs on)."""
        if self.retry_at is not None:
            self.retry_after = max(0.0, (self.retry_at - now).total_seconds())
        return self


class MissingAPIKeyError(InvalidArgumentError):
    """A provider has no API key: neither passed nor in its environment variable."""


class UnknownProviderError(InvalidArgumentError):
    """A model named a provider that is not configured (`provider:model`)."""


class ObjectValidationError(TetherError):
    """`generate_object` got no valid object within its attempts; the last error."""


class BudgetExceededError(TetherError):
    """A run (or a budget key) reached its AI budget; names spend and limit."""

    def __init__(self, message: str, *, spent_usd: float, limit_usd: float | None) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd


def validation_message(exc: ValidationError) -> str:
    """Up to five of pydantic's errors, each as ``field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:5]
    )
