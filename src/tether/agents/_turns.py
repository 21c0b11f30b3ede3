"""One agent turn inside a step: stream the backend's events, meter usage, watch for
a stall, and attach the turn's usage to the step's record. A cancelled run needs no
watching: its cancel cancels the step (at once from the App driving it, within about
a second from another process), and the turn's process group is killed with it.

The usage row goes to tether's AI call log (call type ``agent``) in the same
transaction as the step's completion, so tokens and cost are counted exactly
when the turn is recorded: never twice after a crash or a retry, and every
total (`tether usage`, budgets, `agents status`) is a query over those rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._attach import attach
from ..clock import Clock
from ..store import NewAICall
from ._scheduler import is_stalled
from .backends import AgentBackend, AgentEvent, TurnRequest, TurnResult, Usage, UsageMeter

__all__ = ["TurnOutcome", "run_turn"]

WATCH_EVERY = 0.2  # real seconds between checks for a stall


@dataclass
class _Live:
    started: float
    last_progress: float | None = None
    last_event: str | None = None
    last_message: str | None = None
    events: int = 0
    spoke: bool = False  # the agent wrote a line of its own protocol (not stray text)


def _outcome(result: TurnResult, delta: Usage, live: _Live) -> dict[str, Any]:
    return {
        "status": result.status,
        "session_id": result.session_id,
        "message": result.message,
        "error": result.error,
        "retry_after": result.retry_after,
        "input_tokens": delta.input_tokens,
        "output_tokens": delta.output_tokens,
        "cost_usd": delta.cost_usd,
        "last_event": live.last_event,
        "events": live.events,
    }


TurnOutcome = dict[str, Any]


ANONYMOUS = "session"  # the totals of a session that has not said its id (yet)


async def run_turn(
    backend: AgentBackend,
    request: TurnRequest,
    *,
    stall_timeout_ms: int,
    cancelled: Callable[[], Awaitable[bool]] | None = None,
    on_event: Callable[[AgentEvent], Awaitable[None]],
    model: str,
    budget_key: str,
    clock: Clock,
    seen_totals: dict[str, list[float | None]] | None = None,
) -> TurnOutcome:
    """Run one turn; the outcome as plain JSON (what the step records). `seen_totals`
    are the session totals earlier turns of the attempt saw (recorded with them), so
    a total a session reports again is not counted again. A stall is judged by
    `clock` (the App's), as every other time of the dispatcher is, so a FakeClock
    drives it. `cancelled`: asked between looks, for a turn run outside a step (whose
    cancel no run's cancel interrupts); a step's turn leaves it out (it read the run
    five times a second, each agent, for what the step's cancel tells at once)."""
    meter = UsageMeter()
    for session, (i, o, c, cost) in (seen_totals or {}).items():
        meter.last[session] = Usage(int(i or 0), int(o or 0), int(c or 0), cost)
    live = _Live(started=clock.now().timestamp())

    async def seen(event: AgentEvent) -> None:
        live.events += 1
        live.last_event = event.kind
        live.last_message = event.message or live.last_message
        live.spoke = live.spoke or event.kind not in ("other_message", "malformed")
        if event.progress:
            live.last_progress = clock.now().timestamp()
        if event.usage is not None:
            meter.feed(event.session_id or request.session_id or ANONYMOUS, event.usage)
        await on_event(event)

    turn = asyncio.ensure_future(backend.run_turn(request, seen))
    try:
        why = await _watch(turn, live, stall_timeout_ms, cancelled, clock)
    except BaseException:
        # the step itself was cancelled (its run's cancel, a dispatcher shutting down):
        # the agent must not outlive it, or it would go on editing a workspace handed
        # to another; what it told it spent is logged with the step cut short
        await _stop(turn)
        stopped = TurnResult("failed", request.session_id, error="stopped: its step was cancelled")
        with contextlib.suppress(Exception):
            _settle(backend, model, request, stopped, meter, live, budget_key)
        raise
    if why is not None:
        await _stop(turn)
        result = TurnResult("failed", request.session_id, error=why)
    else:
        result = turn.result()
    return _settle(backend, model, request, result, meter, live, budget_key)


def _settle(
    backend: AgentBackend,
    model: str,
    request: TurnRequest,
    result: TurnResult,
    meter: UsageMeter,
    live: _Live,
    budget_key: str,
) -> TurnOutcome:
    """The turn's outcome, its usage logged (attached to the step's record)."""
    _name_session(meter, result.session_id or request.session_id)
    if result.usage is not None:
        meter.feed(result.session_id or ANONYMOUS, result.usage)
    outcome = _outcome(result, meter.delta, live)
    outcome["totals"] = {
        k: [u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cost_usd]
        for k, u in meter.last.items()
    }
    outcome["cost_unknown"] = meter.unpriced_steps > 0 or _told_nothing(backend, meter, live)
    _log_usage(backend.name, model, request, outcome, meter, budget_key)
    return outcome


def _log_usage(
    backend: str,
    model: str,
    request: TurnRequest,
    outcome: TurnOutcome,
    meter: UsageMeter,
    key: str,
) -> None:
    """The turn's rows of the AI call log: its priced usage, and apart from it (never
    summed in as free) what it was billed at a cost nobody told, as wf.ai logs such a
    call: tokens and cost unknown, counted in `unknown_cost_calls`."""
    priced = _priced_part(meter)
    if priced.total or priced.cost_usd:
        attach(_call_row(backend, model, request, outcome, priced, key))
    if outcome["cost_unknown"]:
        attach(_call_row(backend, model, request, outcome, meter.unpriced, key))


def _told_nothing(backend: AgentBackend, meter: UsageMeter, live: _Live) -> bool:
    """An agent that tells each turn's usage (`tells_usage`) worked in this turn but
    told none of it (no result line, a failed or stalled turn): it may have been
    billed, so the turn is a call of unknown cost, never an unseen one."""
    return bool(getattr(backend, "tells_usage", False)) and live.spoke and not meter.reports


def _priced_part(meter: UsageMeter) -> Usage:
    """The turn's usage of known cost: everything but its unpriced steps."""
    d, u = meter.delta, meter.unpriced
    return Usage(
        d.input_tokens - u.input_tokens,
        d.output_tokens - u.output_tokens,
        d.cached_input_tokens - u.cached_input_tokens,
        d.cost_usd,
        cumulative=False,
    )


def _name_session(meter: UsageMeter, named: str | None) -> None:
    """Totals reported before the agent named its session (it names it at the end, on
    its result or question) are that session's: the turn that continues it reports
    under its name, and the same tokens were counted a second time."""
    if named and ANONYMOUS in meter.last and named not in meter.last:
        meter.last[named] = meter.last.pop(ANONYMOUS)


async def _stop(turn: asyncio.Future[Any]) -> None:
    """Cancel the backend's turn and wait until it let go (its process group killed)."""
    turn.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await turn


async def _watch(
    turn: asyncio.Future[TurnResult],
    live: _Live,
    stall_timeout_ms: int,
    cancelled: Callable[[], Awaitable[bool]] | None,
    clock: Clock,
) -> str | None:
    """Wait for the turn; the reason to stop it early, or None when it ended."""
    while True:
        done, _ = await asyncio.wait({turn}, timeout=WATCH_EVERY)
        if done:
            return None
        if is_stalled(live.last_progress, live.started, clock.now().timestamp(), stall_timeout_ms):
            return f"stalled: no progress for {stall_timeout_ms} ms (last event: {live.last_event})"
        if cancelled is not None and await cancelled():
            return "cancelled: the run was stopped"


def _call_row(
    backend: str, model: str, request: TurnRequest, outcome: TurnOutcome, delta: Usage, key: str
) -> NewAICall:
    cost = delta.cost_usd
    return NewAICall(
        call_type="agent",
        provider=backend,
        model=model,
        prompt=json.dumps({"turn": request.turn, "prompt": request.prompt}),
        response=json.dumps({"status": outcome["status"], "message": outcome["message"]}),
        input_tokens=delta.input_tokens,
        cached_input_tokens=delta.cached_input_tokens,
        output_tokens=delta.output_tokens,
        cost_micro_usd=None if cost is None else round(cost * 1_000_000),
        price_source=None if cost is None else "agent",
        budget_key=key,
        billed=True,  # the agent's model calls were made: none is a refused call
    )
