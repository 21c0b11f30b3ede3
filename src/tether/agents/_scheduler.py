"""The scheduler as a pure reducer: ``apply_event(state, event) -> (state, effects)``.

No I/O and no clock: every event carries `now` (seconds). The daemon feeds it
ticks (reconcile, then dispatch) and executes the effects through tether (a
dispatch is a queued run, a stop is a cancel); each issue's durable run feeds
it its own worker exits and due retries and executes those effects (a retry
is a durable timer, a wait for a person a durable signal wait). Each rule of
Symphony's SPEC has a function of the same name here:

- `is_eligible` (and `why_not`, the reason an issue is not dispatched),
- `sort_candidates` (priority 1..4 first, then created_at, then identifier),
- `available_slots` (global and per state),
- `retry_delay` (continuation 1 s; failure ``min(10 s × 2^(n−1), cap)``),
- `reconcile_issue` (terminal: stop and clean; not active or gone: stop, keep),
- `is_stalled` (no *progress* event for `stall_timeout_ms`).

tether adds `max_retries`: once that many retries failed too (`max_retries` + 1
failures in a row) the issue waits for a person instead of retrying forever; and a
shared provider cooldown (a rate limit waits it out and is not counted as a failure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from ._config import WorkflowConfig
from ._issue import Issue, normalise_state

# what `tether.agents` exports of the scheduler (its `__all__` re-exports this);
# `Event`, `Effect` and `sort_key` stay the module's own
__all__ = [
    "AgentUpdate",
    "CleanWorkspace",
    "Dispatch",
    "Log",
    "Release",
    "RetryDue",
    "RetryEntry",
    "RunningEntry",
    "ScheduleRetry",
    "SchedulerState",
    "SetCooldown",
    "Stop",
    "Tick",
    "WaitForPerson",
    "WorkerExit",
    "apply_event",
    "available_slots",
    "is_eligible",
    "is_stalled",
    "reconcile_issue",
    "retry_delay",
    "sort_candidates",
    "why_not",
]

CONTINUATION_DELAY_MS = 1_000
NO_SLOTS = "no available orchestrator slots"
V = TypeVar("V")
FAILURE_BASE_MS = 10_000


# -- state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningEntry:
    """An issue an agent works on (or is about to: dispatched, not yet started)."""

    issue: Issue
    attempt: int | None  # None on the first run
    started_at: float
    last_progress_at: float | None = None
    failures: int = 0  # failed attempts in a row
    tokens: int = 0


@dataclass(frozen=True)
class RetryEntry:
    identifier: str
    attempt: int
    due_at: float
    error: str | None
    failures: int = 0


@dataclass(frozen=True)
class SchedulerState:
    """What the scheduler holds. `held` are issues claimed without an agent running:
    waiting for a person (input, approval, retries exhausted, stopped by one)."""

    running: Mapping[str, RunningEntry] = field(default_factory=dict)
    retrying: Mapping[str, RetryEntry] = field(default_factory=dict)
    held: Mapping[str, str] = field(default_factory=dict)  # issue id -> reason
    cooldown_until: float | None = None
    tokens: int = 0

    def claimed(self, issue_id: str) -> bool:
        return issue_id in self.running or issue_id in self.retrying or issue_id in self.held


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """A poll: `candidates` in the active states (None: the fetch failed, no dispatch
    this tick); `refreshed` the claimed issues by id as the tracker has them now
    (None: the refresh failed, keep everything running; a missing id: not visible)."""

    now: float
    candidates: tuple[Issue, ...] | None
    refreshed: Mapping[str, Issue] | None


@dataclass(frozen=True)
class WorkerExit:
    issue_id: str
    now: float
    reason: Literal[
        "normal", "failure", "stalled", "input_required", "rate_limited", "budget_exceeded"
    ]
    error: str | None = None
    retry_after: float | None = None  # seconds: rate_limited, a budget's next period


@dataclass(frozen=True)
class AgentUpdate:
    """An agent event. `progress` is False for heartbeats and rate-limit notices:
    only progress keeps a run from being judged stalled."""

    issue_id: str
    now: float
    progress: bool
    tokens: int = 0  # a delta, never a session total
    rate_limited_until: float | None = None


@dataclass(frozen=True)
class RetryDue:
    """A retry timer fired; `issue` as the tracker has it now (None: not visible),
    `error` if that fetch failed."""

    issue_id: str
    now: float
    issue: Issue | None
    error: str | None = None


Event = Tick | WorkerExit | AgentUpdate | RetryDue


# -- effects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    issue: Issue
    attempt: int | None


@dataclass(frozen=True)
class _IssueEffect:
    """An effect on one claimed issue, and why (the base of those that give a reason)."""

    issue_id: str
    reason: str


@dataclass(frozen=True)
class Stop(_IssueEffect):
    """Stop the issue's agent (its run is cancelled)."""

    clean: bool  # remove the workspace too (terminal issues), after the agent stopped


@dataclass(frozen=True)
class ScheduleRetry:
    issue_id: str
    identifier: str
    attempt: int
    delay_ms: int
    error: str | None


class WaitForPerson(_IssueEffect):
    """Hold the issue for a person (input required, retries exhausted, budget spent)."""


class Release(_IssueEffect):
    """Let the claim on the issue go (gone from the tracker, terminal, not active)."""


@dataclass(frozen=True)
class CleanWorkspace:
    issue_id: str
    identifier: str


@dataclass(frozen=True)
class SetCooldown:
    until: float


@dataclass(frozen=True)
class Log:
    message: str
    issue_id: str | None = None


Effect = (
    Dispatch | Stop | ScheduleRetry | WaitForPerson | Release | CleanWorkspace | SetCooldown | Log
)

# what the reducer makes of an event: the next state and the effects to execute
Transition = tuple[SchedulerState, list[Effect]]


# -- the named rules --------------------------------------------------------------------


def sort_key(issue: Issue) -> tuple[int, int, str, str]:
    """Priority 1..4 first (lower first), anything else after; then the oldest
    `created_at` (none last); then the identifier."""
    p = issue.priority
    rank = p if isinstance(p, int) and 1 <= p <= 4 else 5
    created = issue.created_at
    return (rank, 0 if created else 1, created or "", issue.identifier)


def sort_candidates(issues: tuple[Issue, ...] | list[Issue]) -> list[Issue]:
    return sorted(issues, key=sort_key)


def retry_delay(kind: Literal["continuation", "failure"], attempt: int, max_backoff_ms: int) -> int:
    """Milliseconds before retry `attempt` (1-based): 1,000 after a clean exit; after
    a failure ``min(10000 × 2^(attempt−1), max_backoff_ms)`` (exponent capped at 10)."""
    if kind == "continuation":
        return CONTINUATION_DELAY_MS
    exponent: int = min(max(attempt - 1, 0), 10)
    return min(FAILURE_BASE_MS * (1 << exponent), max_backoff_ms)


def available_slots(state: SchedulerState, config: WorkflowConfig, issue_state: str) -> int:
    """Free agent slots for an issue in `issue_state`: the global cap minus what runs,
    and the state's own cap (if configured) minus what runs in that state."""
    free = max(config.agent.max_concurrent_agents - len(state.running), 0)
    cap = config.agent.max_concurrent_agents_by_state.get(normalise_state(issue_state))
    if cap is not None:
        same = sum(
            1
            for e in state.running.values()
            if normalise_state(e.issue.state) == normalise_state(issue_state)
        )
        free = min(free, max(cap - same, 0))
    return free


def _routable(issue: Issue, config: WorkflowConfig) -> bool:
    return issue.dispatchable and set(config.tracker.required_labels) <= set(issue.labels)


def why_not(issue: Issue, state: SchedulerState, config: WorkflowConfig, now: float) -> str | None:
    """Why `issue` is not dispatched now (None: it is eligible)."""
    tracker = config.tracker
    if not (issue.id and issue.identifier and issue.title and issue.state):
        return "malformed: id, identifier, title or state missing"
    if not tracker.is_active(issue.state):
        return f"state {issue.state!r} is not active"
    if not issue.dispatchable:
        return "not dispatchable"
    missing = [label for label in tracker.required_labels if label not in issue.labels]
    if missing:
        return f"missing required labels {missing}"
    if normalise_state(issue.state) == "todo":
        terminal = {normalise_state(s) for s in tracker.terminal()}
        open_blockers = [
            b.identifier or b.id or "?"
            for b in issue.blocked_by
            if b.state is None or normalise_state(b.state) not in terminal
        ]
        if open_blockers:
            return f"blocked by {', '.join(open_blockers)}"
    if issue.id in state.running:
        return "already running"
    if issue.id in state.retrying:
        return "waiting for its retry"
    if issue.id in state.held:
        return f"held: {state.held[issue.id]}"
    if state.cooldown_until is not None and now < state.cooldown_until:
        return "provider cooldown"
    if available_slots(state, config, issue.state) <= 0:
        return "no free slot"
    return None


def is_eligible(issue: Issue, state: SchedulerState, config: WorkflowConfig, now: float) -> bool:
    return why_not(issue, state, config, now) is None


def reconcile_issue(
    issue: Issue | None, config: WorkflowConfig
) -> Literal["keep", "stop_and_clean", "stop"]:
    """What to do with a running issue given its refreshed record (None: not visible)."""
    if issue is None:
        return "stop"
    if config.tracker.is_terminal(issue.state):
        return "stop_and_clean"
    if config.tracker.is_active(issue.state) and _routable(issue, config):
        return "keep"
    return "stop"


def is_stalled(
    last_progress_at: float | None, started_at: float, now: float, stall_timeout_ms: int
) -> bool:
    """No progress for longer than the timeout (since the start if none yet); a
    timeout <= 0 disables the check."""
    if stall_timeout_ms <= 0:
        return False
    since = last_progress_at if last_progress_at is not None else started_at
    return (now - since) * 1000 > stall_timeout_ms


# -- the reducer ------------------------------------------------------------------------


def apply_event(state: SchedulerState, event: Event, config: WorkflowConfig) -> Transition:
    """The next state and the effects to execute; pure."""
    if isinstance(event, Tick):
        return _tick(state, event, config)
    if isinstance(event, WorkerExit):
        return _worker_exit(state, event, config)
    if isinstance(event, AgentUpdate):
        return _agent_update(state, event)
    return _retry_due(state, event, config)


def _without(mapping: Mapping[str, V], key: str) -> dict[str, V]:
    return {k: v for k, v in mapping.items() if k != key}


def _reconcile(state: SchedulerState, event: Tick, config: WorkflowConfig) -> Transition:
    effects: list[Effect] = []
    running = dict(state.running)
    retrying = dict(state.retrying)
    for issue_id, entry in state.running.items():
        if is_stalled(
            entry.last_progress_at, entry.started_at, event.now, config.agent.stall_timeout_ms
        ):
            effects.append(Stop(issue_id, "stalled", clean=False))
            del running[issue_id]
            failures = entry.failures + 1
            attempt = (entry.attempt or 0) + 1
            retrying[issue_id] = RetryEntry(
                entry.issue.identifier, attempt, event.now, "stalled", failures
            )
    if event.refreshed is None:
        effects.append(Log("tracker refresh failed; keeping every agent running"))
        return replace(state, running=running, retrying=retrying), effects
    held = dict(state.held)
    for issue_id in [*running, *retrying, *held]:
        verdict = reconcile_issue(event.refreshed.get(issue_id), config)
        if verdict == "keep":
            if issue_id in running:
                running[issue_id] = replace(running[issue_id], issue=event.refreshed[issue_id])
            continue
        reason = "terminal" if verdict == "stop_and_clean" else "no longer active"
        effects.append(Stop(issue_id, reason, clean=verdict == "stop_and_clean"))
        running.pop(issue_id, None)
        retrying.pop(issue_id, None)
        held.pop(issue_id, None)
    return replace(state, running=running, retrying=retrying, held=held), effects


def _tick(state: SchedulerState, event: Tick, config: WorkflowConfig) -> Transition:
    state, effects = _reconcile(state, event, config)
    if event.candidates is None:
        effects.append(Log("candidate fetch failed; no dispatch this tick"))
        return state, effects
    running = dict(state.running)
    for issue in sort_candidates(event.candidates):
        current = replace(state, running=running)
        if why_not(issue, current, config, event.now) is not None:
            continue
        running[issue.id] = RunningEntry(issue, None, event.now)
        effects.append(Dispatch(issue, None))
    return replace(state, running=running), effects


def _worker_exit(state: SchedulerState, event: WorkerExit, config: WorkflowConfig) -> Transition:
    entry = state.running.get(event.issue_id)
    if entry is None:
        return state, [Log("exit of an issue that is not running", event.issue_id)]
    running = _without(state.running, event.issue_id)
    attempt = (entry.attempt or 0) + 1
    ident = entry.issue.identifier
    effects: list[Effect] = []
    cooldown = state.cooldown_until
    if event.reason == "input_required":
        held = {**state.held, event.issue_id: "waiting for input"}
        return replace(state, running=running, held=held), [
            WaitForPerson(event.issue_id, "input_required")
        ]
    if event.reason == "budget_exceeded" and event.retry_after is not None:
        # a budget over a period: the issue goes on in the next one (not a failure)
        retry = RetryEntry(ident, attempt, event.now + event.retry_after, event.error, 0)
        delay = int(event.retry_after * 1000)
        retrying = {**state.retrying, event.issue_id: retry}
        return replace(state, running=running, retrying=retrying), [
            ScheduleRetry(event.issue_id, ident, attempt, delay, event.error)
        ]
    if event.reason == "budget_exceeded":  # a person raises the budget, then retries
        held = {**state.held, event.issue_id: "budget spent"}
        why = "budget_exceeded" + (f": {event.error}" if event.error else "")
        return replace(state, running=running, held=held), [WaitForPerson(event.issue_id, why)]
    if event.reason == "normal":
        # Symphony's continuation is attempt 1 whatever came before: clean turns do not
        # grow the exponent a later failure backs off by (ten of them made it 5 min)
        retry = RetryEntry(ident, 1, event.now + CONTINUATION_DELAY_MS / 1000, None, 0)
        effects.append(ScheduleRetry(event.issue_id, ident, 1, CONTINUATION_DELAY_MS, None))
    else:
        # a rate limit is no failure of the issue's: it waits the cooldown, however many
        # in a row (a provider's usage cap), and never parks it as "retries exhausted"
        limited = event.reason == "rate_limited"
        failures = entry.failures + (0 if limited else 1)
        limit = config.agent.max_retries
        if not limited and limit is not None and failures > limit:
            held = {**state.held, event.issue_id: f"failed {failures} times: {event.error}"}
            return replace(state, running=running, held=held), [
                WaitForPerson(event.issue_id, f"retries exhausted ({limit}): {event.error}")
            ]
        delay = retry_delay("failure", attempt, config.agent.max_retry_backoff_ms)
        if event.reason == "rate_limited":
            wait = (
                event.retry_after
                if event.retry_after is not None
                else config.agent.rate_limit_cooldown_ms / 1000
            )
            cooldown = max(cooldown or 0.0, event.now + wait)
            effects.append(SetCooldown(cooldown))
            delay = max(delay, int(wait * 1000))
        retry = RetryEntry(ident, attempt, event.now + delay / 1000, event.error, failures)
        effects.append(ScheduleRetry(event.issue_id, ident, attempt, delay, event.error))
    retrying = {**state.retrying, event.issue_id: retry}
    return replace(state, running=running, retrying=retrying, cooldown_until=cooldown), effects


def _agent_update(state: SchedulerState, event: AgentUpdate) -> Transition:
    effects: list[Effect] = []
    cooldown = state.cooldown_until
    if event.rate_limited_until is not None and (
        cooldown is None or event.rate_limited_until > cooldown
    ):
        cooldown = event.rate_limited_until
        effects.append(SetCooldown(cooldown))
    entry = state.running.get(event.issue_id)
    if entry is None:
        return replace(state, cooldown_until=cooldown), effects
    entry = replace(
        entry,
        last_progress_at=event.now if event.progress else entry.last_progress_at,
        tokens=entry.tokens + event.tokens,
    )
    running = {**state.running, event.issue_id: entry}
    return replace(
        state, running=running, cooldown_until=cooldown, tokens=state.tokens + event.tokens
    ), effects


def _retry_due(state: SchedulerState, event: RetryDue, config: WorkflowConfig) -> Transition:
    entry = state.retrying.get(event.issue_id)
    if entry is None:
        return state, [Log("retry of an issue that is not retrying", event.issue_id)]
    retrying = _without(state.retrying, event.issue_id)
    if event.error is not None:
        again = replace(entry, attempt=entry.attempt + 1, error="retry refresh failed")
        delay = retry_delay("failure", again.attempt, config.agent.max_retry_backoff_ms)
        return replace(state, retrying={**retrying, event.issue_id: again}), [
            ScheduleRetry(
                event.issue_id, entry.identifier, again.attempt, delay, "retry refresh failed"
            )
        ]
    issue = event.issue
    after: SchedulerState = replace(state, retrying=retrying)
    if issue is None:
        return after, [Release(event.issue_id, "no longer visible in the tracker")]
    if config.tracker.is_terminal(issue.state):
        return after, [
            CleanWorkspace(event.issue_id, entry.identifier),
            Release(event.issue_id, "terminal"),
        ]
    # the whole of a candidate's eligibility, claims and slots aside: an issue given to
    # somebody else, or a `todo` one blocked by an open issue, since it failed is
    # released (Symphony), not dispatched again
    why = why_not(issue, SchedulerState(), config, event.now)
    if why is not None:
        return after, [Release(event.issue_id, why)]
    if available_slots(after, config, issue.state) <= 0:  # Symphony: requeued, attempt+1
        again = replace(entry, attempt=entry.attempt + 1, error=NO_SLOTS)
        delay = retry_delay("failure", again.attempt, config.agent.max_retry_backoff_ms)
        return replace(after, retrying={**retrying, event.issue_id: again}), [
            ScheduleRetry(event.issue_id, entry.identifier, again.attempt, delay, NO_SLOTS)
        ]
    running = {
        **state.running,
        event.issue_id: RunningEntry(issue, entry.attempt, event.now, failures=entry.failures),
    }
    return replace(after, running=running), [Dispatch(issue, entry.attempt)]
