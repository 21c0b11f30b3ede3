"""Retry policies and back-off."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ._durations import MAX_SECONDS
from .errors import InvalidArgumentError

__all__ = ["RetryPolicy", "as_policy"]

log = logging.getLogger("tether")

MAX_ATTEMPTS = 1_000_000  # "retry for ever" in practice; beyond it a typo, not a plan


class _DefaultCap(float):
    """The default `max_delay`, told apart from one given: a longer `backoff` raises it
    (``RetryPolicy(backoff=3600)`` waited 30 s, the default cap, not the hour asked)."""


DEFAULT_MAX_DELAY = _DefaultCap(30.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is attempted and how long to wait between attempts.

    The delay before attempt n+1 is ``backoff * multiplier ** (n - 1)`` seconds,
    capped at `max_delay` (by default 30 s, or `backoff` if that is longer; one
    given must be at least `backoff`), then spread by up to ±`jitter` (a fraction) so
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
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = 0.2
    should_retry: Callable[[BaseException], bool] | None = None
    interrupted_reruns: int = 3
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not _is_int(self.attempts) or not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise InvalidArgumentError(
                f"retry attempts must be an integer from 1 to {MAX_ATTEMPTS:,}, got "
                f"{self.attempts!r}; pass e.g. RetryPolicy(attempts=3)"
            )
        for name in ("backoff", "max_delay"):  # a longer wait overflows a clock's datetime
            _check_number(name, getattr(self, name), low=0.0, high=MAX_SECONDS)
        _check_cap(self)
        _check_number("multiplier", self.multiplier, low=1.0)
        _check_number("jitter", self.jitter, low=0.0, high=1.0)
        if not _is_int(self.interrupted_reruns) or self.interrupted_reruns < 0:
            raise InvalidArgumentError(
                f"interrupted_reruns must be an integer >= 0, got {self.interrupted_reruns!r}; "
                "pass e.g. RetryPolicy(interrupted_reruns=3)"
            )
        if self.should_retry is not None and not callable(self.should_retry):
            raise InvalidArgumentError(
                f"retry should_retry must be a function of the error, got {self.should_retry!r}; "
                "pass e.g. should_retry=lambda exc: isinstance(exc, TimeoutError)"
            )
        if isinstance(self.non_retryable, type):
            object.__setattr__(self, "non_retryable", (self.non_retryable,))
        if not isinstance(self.non_retryable, tuple | list | set | frozenset) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.non_retryable
        ):
            raise InvalidArgumentError(
                f"non_retryable must be exception types, got {self.non_retryable!r}; "
                "pass e.g. non_retryable=(ValueError, PermissionError)"
            )
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        try:
            grown = self.backoff * self.multiplier ** max(0, attempt - 1)
        except OverflowError:  # a float power past 1e308: the cap applies
            grown = math.inf
        base = min(self.max_delay, grown)
        if self.jitter and base:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)

    def retries(self, error: BaseException) -> bool:
        """Whether `error` is worth another attempt. A `should_retry` that raises says
        no, noted on `error`: its own error left the step `running` in the record, in
        a run failed with that error instead of the step's."""
        if not isinstance(error, Exception) or isinstance(error, self.non_retryable):
            return False
        if self.should_retry is None:
            return True
        try:
            return bool(self.should_retry(error))
        except Exception as exc:
            with contextlib.suppress(Exception):  # an error that refuses notes
                error.add_note(
                    f"tether: not retried, as should_retry raised {exc!r} when asked about "
                    "this error; make should_retry return True or False for every error"
                )
            log.warning("should_retry raised %r; the error is not retried", exc)
            return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(name: str, value: object, *, low: float, high: float = math.inf) -> None:
    """`value` is a finite real number within [low, high] (not NaN, not a bool)."""
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond any float
            number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        # the century cap reads better in words than as 3.16224e+09
        most = "at most a century of seconds" if high == MAX_SECONDS else f"<= {high:g}"
        top = "" if high == math.inf else f" and {most}"
        raise InvalidArgumentError(
            f"retry {name} must be a finite number >= {low:g}{top}, got {value!r}; "
            f"pass e.g. RetryPolicy({name}={max(low, min(high, 1.0)):g})"
        )


def _check_cap(policy: RetryPolicy) -> None:
    """The default cap raised to a longer `backoff`; a cap given shorter than the first
    wait refused: every wait would be the cap, the backoff asked for never used."""
    if type(policy.max_delay) is _DefaultCap:
        object.__setattr__(policy, "max_delay", max(30.0, float(policy.backoff)))
    elif policy.max_delay < policy.backoff:
        raise InvalidArgumentError(
            f"retry max_delay ({policy.max_delay:g} s) is shorter than backoff "
            f"({policy.backoff:g} s), the first wait, so every wait would be max_delay; "
            f"pass a max_delay of at least the backoff, e.g. RetryPolicy(backoff="
            f"{policy.backoff:g}, max_delay={max(30.0, float(policy.backoff)):g}), or a "
            "smaller backoff"
        )


def as_policy(retry: int | RetryPolicy | None) -> RetryPolicy:
    """Normalise the `retry=` argument of a step."""
    if retry is None:
        return _DEFAULT  # frozen: one instance serves every step (no per-step validation)
    if isinstance(retry, RetryPolicy):
        return retry
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise InvalidArgumentError(
            f"retry must be an int (attempts) or a RetryPolicy, got {type(retry).__name__}"
        )
    return RetryPolicy(attempts=retry)


_DEFAULT = RetryPolicy()
