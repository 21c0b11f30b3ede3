"""Budgets: a ceiling on a run's (or a key's) AI spend, checked before each call.

The check reads the recorded spend (the call log), so it holds across
processes and restarts. One call can overshoot: its price is known only
after it answered, so the check stops the *next* call, never the one that
crossed the line. Calls in flight at once (parallel branches) are admitted
against it together in their process (`_admission`), so they overshoot by
about one call too.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InvalidArgumentError
from ..store import AISpend as Spend

__all__ = ["Budget", "Spend", "Verdict", "budget_stops", "latest_raise", "raises_told"]

Verdict = Literal["ok", "warn", "exceeded"]
Period = Literal["hour", "day", "week", "month"]
_SAID = {"day": "today"}
_LENGTHS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
_LIMITS = {"max_usd", "max_tokens"}  # what a budget.raise signal may carry
_EXAMPLE = "ai.Budget(max_usd=2.0, warn_at=0.8, on_exceed='pause')"
_RAISE = "{'max_usd': 5} or {'max_tokens': 200000}"
_EPOCH = datetime.min.replace(tzinfo=UTC)  # an event read without its time


class InvalidBudgetError(InvalidArgumentError):
    """A budget's fields refused: `detail` says which and why, the message what to pass."""

    def __init__(
        self, detail: str, what: str = "budget is not valid", example: str = _EXAMPLE
    ) -> None:
        super().__init__(f"{what} ({detail}); pass e.g. {example}")
        self.detail = detail


class Budget(BaseModel):
    """A limit on AI spend: `max_usd` and/or `max_tokens` (input + output).

    At `warn_at` (a fraction of a limit) a ``budget.warning`` event is
    recorded once (once more after each raise, at the new line). A call the
    budget stops records ``budget.exceeded`` (spend, limit, the stopped step);
    then ``on_exceed="fail"`` fails the run with `BudgetExceededError`;
    ``"pause"`` parks it until the signal ``budget.raise`` arrives with new
    limits (``{"max_usd": 5}``), then the call runs. `key` shares one budget among many runs (a customer, an
    issue): spend is summed over every run that used the key.

    A run's budget covers the runs it starts (``wf.child``, ``wf.start_child``, at any
    depth): their calls count with its own, and each of their calls is checked against
    it as well as against the child's own budget (``wf.child(fn, x, budget=...)``, or
    its workflow's). A key is passed down: a child without a key of its own logs its
    calls under the nearest one above it.

    `period` (``"hour"``, ``"day"``, ``"week"``, ``"month"``: calendar periods in
    UTC, weeks from Monday) counts only the calls made since the current period began:
    ``Budget(key="project:x", max_usd=50, period="day")`` is $50 a day. A run the
    budget paused goes on by itself when the next period begins (or at a raise).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, gt=0)
    warn_at: float = Field(default=0.8, gt=0, le=1)
    on_exceed: Literal["fail", "pause"] = "fail"
    key: str | None = Field(default=None, min_length=1)
    period: Period | None = None

    def __init__(self, **fields: Any) -> None:
        """As pydantic's, with what it refused told as an `InvalidArgumentError`."""
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "budget"
            msg = err["msg"].removeprefix("Value error, ")  # a validator's own words
            raise InvalidBudgetError(f"{where}: {msg}") from None

    @field_validator("max_usd", "max_tokens", "warn_at", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read True as 1 ($1, one token)
            raise ValueError("Input should be a number, not a bool")
        return value

    @model_validator(mode="after")
    def _a_limit(self) -> Budget:
        if self.max_usd is None and self.max_tokens is None:
            raise ValueError("give max_usd, max_tokens or both")
        return self

    @classmethod
    def of(cls, value: Any) -> Budget | None:
        """`value` as a Budget (a Budget, a dict of its fields, or None), or a clear error."""
        if value is None or isinstance(value, Budget):
            return value
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise InvalidArgumentError(
                f"budget must be an ai.Budget or a dict of its fields, got {value!r}; "
                f"pass e.g. {_EXAMPLE}"
            )
        return cls(**value)

    @classmethod
    def stored(cls, value: Any) -> str | None:
        """`value` (as `of` takes it) as a run records its budget: JSON of the fields
        set, or None; a bad one refused before anything is written."""
        budget = cls.of(value)
        return None if budget is None else json.dumps(budget.model_dump(exclude_none=True))

    def raised(self, payload: Any) -> Budget:
        """This budget with the limits a ``budget.raise`` signal carries."""
        if not isinstance(payload, dict) or not payload or not payload.keys() <= _LIMITS:
            raise InvalidArgumentError(
                "a budget.raise signal carries new limits and nothing else, e.g. "
                f"{{'max_usd': 5}} or {{'max_tokens': 200000}}; got {payload!r}"
            )
        try:
            return Budget(**{**self.model_dump(), **payload})
        except InvalidBudgetError as exc:
            raise InvalidBudgetError(
                exc.detail, "the limits a budget.raise signal carries are not valid", _RAISE
            ) from None

    def with_limits(self, limits: dict[str, Any]) -> Budget:
        """This budget with the limits a ``budget.raised`` event recorded (`raises_told`)."""
        return Budget(**{**self.model_dump(), **limits})

    @staticmethod
    def check_raise(payload: Any) -> None:
        """Refuse a ``budget.raise`` payload no budget could take (`raised`)."""
        Budget(max_usd=1.0, max_tokens=1).raised(payload)

    def since(self, now: datetime) -> datetime | None:
        """When the period holding `now` began (None: the budget counts every call)."""
        if self.period is None:
            return None
        at = now.astimezone(UTC)
        if self.period == "hour":
            return at.replace(minute=0, second=0, microsecond=0)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.period == "day":
            return day
        if self.period == "week":
            return day - timedelta(days=day.weekday())
        return day.replace(day=1)

    def until(self, now: datetime) -> datetime | None:
        """When the next period begins, counting from nothing (None: no period)."""
        start, period = self.since(now), self.period
        if start is None or period is None:
            return None
        if period == "month":
            return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start + _LENGTHS[period]

    def period_said(self) -> str:
        """The current period, as a sentence says it ("today"); "" without one."""
        return "" if self.period is None else _SAID.get(self.period, f"this {self.period}")

    def judge(self, spend: Spend) -> Verdict:
        """Where `spend` stands, reckoned exactly: in floats $2.40 of $3 was 0.7999...
        and no warning at ``warn_at=0.8``."""
        shares = []
        if self.max_usd is not None:
            shares.append(Fraction(spend.micro_usd, 1_000_000) / _exact(self.max_usd))
        if self.max_tokens is not None:
            shares.append(Fraction(spend.tokens, self.max_tokens))
        top = max(shares)
        if top >= 1:
            return "exceeded"
        return "warn" if top >= _exact(self.warn_at) else "ok"

    def raise_hint(self, spend: Spend) -> dict[str, float | int]:
        """A ``budget.raise`` payload that would let the run go on: each limit `spend`
        reached (all, if it stopped short of them with calls in flight), raised by as
        much again above the spend. A fixed ``{'max_usd': 5}`` told a run stopped by
        ``max_tokens`` to raise dollars, and it stayed paused."""
        usd = None if self.max_usd is None else _exact(self.max_usd)
        reached = self.reached(spend)
        over_usd, over_tokens = "max_usd" in reached, "max_tokens" in reached
        hint: dict[str, float | int] = {}
        if usd is not None and (over_usd or not over_tokens):
            cents = math.ceil(Fraction(spend.micro_usd, 10_000) + usd * 100)
            hint["max_usd"] = cents // 100 if cents % 100 == 0 else cents / 100
        if self.max_tokens is not None and (over_tokens or not over_usd):
            hint["max_tokens"] = spend.tokens + self.max_tokens
        return hint

    def reached(self, spend: Spend) -> list[str]:
        """The limits `spend` has reached, by name (none: calls in flight stopped it short)."""
        found = []
        if self.max_usd is not None and spend.micro_usd >= _exact(self.max_usd) * 1_000_000:
            found.append("max_usd")
        if self.max_tokens is not None and spend.tokens >= self.max_tokens:
            found.append("max_tokens")
        return found

    def describe(self, spend: Spend, of: str | None = None, since: datetime | None = None) -> str:
        """What `spend` is of the limits; `of` says whose spend it is (by default this
        run's, or its key's), `since` from when (the period's start)."""
        parts = []
        if self.max_usd is not None:
            parts.append(f"{_dollars(spend.usd)} of {_dollars(self.max_usd)}")
        if self.max_tokens is not None:
            parts.append(f"{spend.tokens} of {self.max_tokens} tokens")
        unknown = (
            f" ({spend.unknown_cost_calls} calls of unknown price not counted in dollars)"
            if spend.unknown_cost_calls
            else ""
        )
        scope = f"budget key {self.key!r}" if self.key else of or "this run"
        when = "" if since is None else f" {self.period_said()} (since {_utc(since)})"
        return f"{scope} has spent {', '.join(parts)}{when}{unknown}"


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@functools.lru_cache(maxsize=256)
def _exact(value: float) -> Fraction:
    """The decimal a limit is written as (0.8), not the binary float nearest it."""
    return Fraction(repr(value))


def _dollars(usd: float) -> str:
    """Four decimals, or six (micro-dollars) below a cent, so small limits read apart."""
    return f"${usd:.4f}" if usd == 0 or usd >= 0.01 else f"${usd:.6f}"


def raises_told(events: Iterable[Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The ``budget.raised`` events of a run since its last rerun (`run.rerun_from`,
    which may give it a new budget): (whose budget, which raise) -> the limits it gave,
    oldest first. `events` as `budget_stops` takes them."""
    return {key: _limits_of(detail) for key, (_, detail) in _raises(events).items()}


def latest_raise(runs: Sequence[Iterable[Any]], of: str) -> dict[str, Any] | None:
    """The limits the latest raise of run `of`'s budget gave (None: none), read from
    the events of `runs`, nearest the reader first: a raise is recorded by the run
    that took it, which may be `of` or any run between it and the reader, and holds
    for all the runs below that one. The latest by time; at the same time the one
    recorded nearer the reader (it was judged against the limits above it)."""
    best: tuple[tuple[datetime, int, int], dict[str, Any]] | None = None
    for nearness, events in enumerate(runs):
        for order, ((whose, _), (event, detail)) in enumerate(_raises(events).items()):
            at = getattr(event, "at", None) or _EPOCH
            rank = (at, -nearness, order)
            if whose == of and (best is None or rank > best[0]):
                best = (rank, _limits_of(detail))
    return None if best is None else best[1]


def _raises(events: Iterable[Any]) -> dict[tuple[str, int], tuple[Any, dict[str, Any]]]:
    """`raises_told`, each with its event and detail (its time orders raises of runs)."""
    found: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
    for event in events:
        kind = getattr(event, "type", None)
        if kind == "run.rerun_from":
            found.clear()
        detail = _detail(event) if kind == "budget.raised" else None
        if isinstance(detail, dict) and isinstance(detail.get("budget_of"), str):
            found[(detail["budget_of"], int(detail.get("raise") or 0))] = (event, detail)
    return found


def _limits_of(detail: dict[str, Any]) -> dict[str, Any]:
    """The limits a ``budget.raised`` detail records, each named (None: not raised)."""
    return {k: detail.get(k) for k in sorted(_LIMITS)}


def _detail(event: Any) -> Any:
    """An event's detail, its JSON text read (None: not JSON)."""
    detail = getattr(event, "detail", None)
    if isinstance(detail, str):
        try:
            return json.loads(detail)
        except ValueError:
            return None
    return detail


def budget_stops(events: Iterable[Any]) -> dict[str, str]:
    """The steps of a run that a budget stopped, by step key, each with what its
    ``budget.exceeded`` event says (spend, limit, what came next), read from the
    run's events (`RunRecord.events`, or rows whose `detail` is JSON text).

    Such a step is recorded *completed*: the stop is its result, so a replay takes
    the same path (it fails again, or waits for the same ``budget.raise``), and the
    call runs, once raised, as the step's next occurrence (``name#2``). A view of
    the run's steps shows these as stopped by the budget, not as answered calls."""
    found: dict[str, str] = {}
    for event in events:
        if getattr(event, "type", None) != "budget.exceeded":
            continue
        detail = _detail(event)
        step = detail.get("step") if isinstance(detail, dict) else None
        if isinstance(step, str):  # None: recorded by an older tether, step not named
            found[step] = getattr(event, "message", None) or "stopped by the AI budget"
    return found
