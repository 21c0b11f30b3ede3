"""Retry policies and back-off."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidArgumentError

__all__ = ["RetryPolicy", "as_policy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is attempted and how long to wait between attempts.

    The delay before attempt n+1 is ``backoff * multiplier ** (n - 1)`` seconds,
    capped at `max_delay`, then spread by up to ±`jitter` (a fraction) so
    many failing callers do not retry in lock-step. `should_retry(error)`
    decides per error; by default every `Exception` is retried except those
    of the `non_retryable` types (a bad request, a validation error: trying
    again cannot help), which fail the step at once.

    Attempts are counted durably, so the limit holds across processes. An
    attempt cut short by a crash (its process died mid-step) counts too, but
    never stops the step from running again after the crash: such a step may
    start up to `interrupted_reruns` attempts beyond `attempts`, which bounds a
    step that kills its process every time.
    """

    attempts: int = 1
    backoff: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    should_retry: Callable[[BaseException], bool] | None = None
    interrupted_reruns: int = 3
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise InvalidArgumentError(
                f"retry attempts must be an integer >= 1, got {self.attempts!r}"
            )
        if self.backoff < 0 or self.max_delay < 0:
            raise InvalidArgumentError("retry backoff and max_delay must be >= 0 seconds")
        if self.multiplier < 1:
            raise InvalidArgumentError(f"retry multiplier must be >= 1, got {self.multiplier!r}")
        if not isinstance(self.interrupted_reruns, int) or self.interrupted_reruns < 0:
            raise InvalidArgumentError(
                f"interrupted_reruns must be an integer >= 0, got {self.interrupted_reruns!r}"
            )
        if isinstance(self.non_retryable, type):
            object.__setattr__(self, "non_retryable", (self.non_retryable,))
        if not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.non_retryable
        ):
            raise InvalidArgumentError(
                f"non_retryable must be exception types, got {self.non_retryable!r}"
            )
        if not 0 <= self.jitter <= 1:
            raise InvalidArgumentError(f"retry jitter must be within 0..1, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_delay, self.backoff * self.multiplier ** max(0, attempt - 1))
        if self.jitter and base:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)

    def retries(self, error: BaseException) -> bool:
        if not isinstance(error, Exception) or isinstance(error, self.non_retryable):
            return False
        return True if self.should_retry is None else bool(self.should_retry(error))


def as_policy(retry: int | RetryPolicy | None) -> RetryPolicy:
    """Normalise the `retry=` argument of a step."""
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        return retry
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise InvalidArgumentError(
            f"retry must be an int (attempts) or a RetryPolicy, got {type(retry).__name__}"
        )
    return RetryPolicy(attempts=retry)
