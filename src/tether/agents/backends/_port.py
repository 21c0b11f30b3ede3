"""The agent backend port: run one turn of a coding agent in a workspace.

`run_turn(request, on_event)` streams `AgentEvent`s to `on_event` as they come
and returns the turn's `TurnResult`. Usage arrives as `Usage` values that say
whether they are a session's running total (`cumulative`) or a delta; the
caller's `UsageMeter` turns both into deltas, so a total reported twice (or
re-sent after a retry) is never counted twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "AgentBackend",
    "AgentEvent",
    "OnEvent",
    "TurnRequest",
    "TurnResult",
    "TurnStatus",
    "Usage",
    "UsageMeter",
]

TurnStatus = Literal["completed", "failed", "input_required", "rate_limited"]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # total input, cache reads and writes included
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float | None = None
    cumulative: bool = True  # a running total of the session (else a delta)

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: Usage) -> Usage:
        cost = (
            None
            if self.cost_usd is None and other.cost_usd is None
            else (self.cost_usd or 0) + (other.cost_usd or 0)
        )
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            cost,
            cumulative=False,
        )


class UsageMeter:
    """Deltas from whatever a backend reports, per session: a cumulative total is
    diffed against the last one seen for that session (a total that went down is a
    new session: counted from zero); a delta is taken as it is.

    `delta` sums every step (its cost: of the priced ones). A step of unknown cost (a
    model call that told no usage or has no price, an agent that tells tokens but no
    cost) is also summed in `unpriced` and counted in `unpriced_steps`, so the turn
    logs it as a call of unknown cost rather than folded into a known one as free.
    `reports` counts what was fed: a turn with none told nothing of its usage."""

    def __init__(self) -> None:
        self.last: dict[str, Usage] = {}
        self.delta = Usage(cumulative=False)
        self.unpriced = Usage(cumulative=False)
        self.unpriced_steps = 0
        self.reports = 0

    def feed(self, session: str, usage: Usage) -> Usage:
        self.reports += 1
        if not usage.cumulative:
            step = usage
        else:
            prev = self.last.get(session, Usage())
            if usage.input_tokens < prev.input_tokens or usage.output_tokens < prev.output_tokens:
                prev = Usage()
            self.last[session] = usage
            cost = None
            if usage.cost_usd is not None:
                cost = max(usage.cost_usd - (prev.cost_usd or 0.0), 0.0)
            step = Usage(
                usage.input_tokens - prev.input_tokens,
                usage.output_tokens - prev.output_tokens,
                max(usage.cached_input_tokens - prev.cached_input_tokens, 0),
                cost,
                cumulative=False,
            )
        self.delta = self.delta.plus(step)
        # a running total told again with nothing new is no call; a delta is one call
        if step.cost_usd is None and (step.total or not usage.cumulative):
            self.unpriced = self.unpriced.plus(step)
            self.unpriced_steps += 1
        return step


@dataclass(frozen=True)
class AgentEvent:
    """One thing an agent reported. `progress` is False for heartbeats and rate-limit
    notices (they show the agent alive, not working)."""

    kind: str
    progress: bool = True
    message: str | None = None
    usage: Usage | None = None
    session_id: str | None = None
    retry_after: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnRequest:
    prompt: str
    workspace: Path
    turn: int  # 1-based
    max_turns: int
    session_id: str | None  # the session to continue (None: a new one)
    issue: dict[str, Any]
    silence_timeout: float  # seconds without output before the turn fails
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnResult:
    status: TurnStatus
    session_id: str | None = None
    message: str | None = None
    error: str | None = None
    retry_after: float | None = None
    usage: Usage | None = None  # the turn's own usage, if the backend gives one at the end


OnEvent = Callable[[AgentEvent], Awaitable[None]]


class AgentBackend(Protocol):
    name: str

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult: ...
