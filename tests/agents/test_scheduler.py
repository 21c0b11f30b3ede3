"""The reducer's named rules, case by case, without I/O (times are plain numbers)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import pytest

from tether.agents import (
    Blocker,
    Dispatch,
    Issue,
    RetryDue,
    RunningEntry,
    ScheduleRetry,
    SchedulerState,
    SetCooldown,
    Stop,
    Tick,
    WaitForPerson,
    WorkerExit,
    apply_event,
    is_stalled,
    parse_workflow,
    reconcile_issue,
    retry_delay,
    sort_candidates,
    why_not,
)

CONFIG = parse_workflow(
    "---\ntracker: {kind: memory, active_states: [Todo, In Progress], required_labels: [Agent]}\n"
    "agent: {max_concurrent_agents: 2, max_concurrent_agents_by_state: {'in progress': 1},"
    " max_retries: 2, max_retry_backoff_ms: 60000}\n---\nhi"
).config


def issue(ident: str, state: str = "Todo", **kw: object) -> Issue:
    return Issue(id=ident, identifier=ident, title="t", state=state, labels=("agent",), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "attempt", "cap", "expected"),
    [
        ("continuation", 1, 300_000, 1_000),
        ("continuation", 7, 300_000, 1_000),
        ("failure", 1, 300_000, 10_000),
        ("failure", 2, 300_000, 20_000),
        ("failure", 5, 300_000, 160_000),
        ("failure", 6, 300_000, 300_000),
        ("failure", 40, 10**12, 10_000 * 2**10),  # the exponent is capped at 10
        ("failure", 3, 5_000, 5_000),
    ],
)
def test_retry_delay(kind: str, attempt: int, cap: int, expected: int) -> None:
    assert retry_delay(kind, attempt, cap) == expected  # type: ignore[arg-type]


def test_sort_order_priority_1_to_4_first_then_oldest_then_identifier() -> None:
    issues = [
        issue("E", priority=None, created_at="2026-01-01"),
        issue("D", priority=7, created_at="2025-01-01"),
        issue("C", priority=2, created_at=None),
        issue("B", priority=2, created_at="2026-02-01"),
        issue("A", priority=2, created_at="2026-02-01"),
        issue("F", priority=1, created_at="2027-01-01"),
    ]
    assert [i.identifier for i in sort_candidates(issues)] == ["F", "A", "B", "C", "D", "E"]


@pytest.mark.parametrize(
    ("candidate", "state", "reason"),
    [
        (issue("A"), SchedulerState(), None),
        (issue("A", state=" todo "), SchedulerState(), None),  # trimmed, lowercased
        (issue("A", state="Done"), SchedulerState(), "state 'Done' is not active"),
        (issue("A", dispatchable=False), SchedulerState(), "not dispatchable"),
        (
            Issue(id="A", identifier="A", title="t", state="Todo"),
            SchedulerState(),
            "missing required labels ['agent']",
        ),
        (issue("A", blocked_by=(Blocker("B", "B", None),)), SchedulerState(), "blocked by B"),
        (issue("A", blocked_by=(Blocker("B", "B", "Done"),)), SchedulerState(), None),
        (
            issue("A", state="In Progress", blocked_by=(Blocker("B", "B", None),)),
            SchedulerState(),
            None,
        ),
        (
            issue("A"),
            SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)}),
            "already running",
        ),
        (issue("A"), SchedulerState(held={"A": "waiting for input"}), "held: waiting for input"),
        (issue("A"), SchedulerState(cooldown_until=10.0), "provider cooldown"),
        (
            issue("A"),
            SchedulerState(running={k: RunningEntry(issue(k), None, 0) for k in "XY"}),
            "no free slot",
        ),
        (
            issue("A", state="In Progress"),
            SchedulerState(running={"X": RunningEntry(issue("X", state="in progress"), None, 0)}),
            "no free slot",  # the per-state cap of 1
        ),
    ],
)
def test_eligibility(candidate: Issue, state: SchedulerState, reason: str | None) -> None:
    assert why_not(candidate, state, CONFIG, now=5.0) == reason


def test_a_tick_dispatches_in_order_within_the_slots() -> None:
    cands = (issue("C", priority=3), issue("A", priority=1), issue("B", priority=2))
    state, effects = apply_event(SchedulerState(), Tick(0.0, cands, {}), CONFIG)
    assert effects == [Dispatch(cands[1], None), Dispatch(cands[2], None)]
    assert set(state.running) == {"A", "B"}


def test_reconciliation_terminal_cleans_inactive_or_gone_keeps_the_workspace() -> None:
    running = {k: RunningEntry(issue(k), None, 0) for k in "ABCD"}
    refreshed = {"A": issue("A", state="Done"), "B": issue("B", state="Backlog"), "C": issue("C")}
    state, effects = apply_event(SchedulerState(running=running), Tick(1.0, (), refreshed), CONFIG)
    assert Stop("A", "terminal", clean=True) in effects
    assert Stop("B", "no longer active", clean=False) in effects
    assert Stop("D", "no longer active", clean=False) in effects  # not visible any more
    assert set(state.running) == {"C"}


def test_a_failed_refresh_keeps_everything_running() -> None:
    running = {"A": RunningEntry(issue("A"), None, 0)}
    state, effects = apply_event(SchedulerState(running=running), Tick(1.0, None, None), CONFIG)
    assert set(state.running) == {"A"} and not [
        e for e in effects if isinstance(e, Stop | Dispatch)
    ]


def test_reconcile_issue_rules() -> None:
    assert reconcile_issue(None, CONFIG) == "stop"
    assert reconcile_issue(issue("A", state="closed"), CONFIG) == "stop_and_clean"
    assert reconcile_issue(issue("A"), CONFIG) == "keep"
    assert reconcile_issue(issue("A", dispatchable=False), CONFIG) == "stop"


def test_exits_continuation_failure_backoff_then_a_person() -> None:
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    s, eff = apply_event(s, WorkerExit("A", 10.0, "normal"), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 1, 1_000, None)]
    s, eff = apply_event(s, RetryDue("A", 11.0, issue("A")), CONFIG)
    assert eff == [Dispatch(issue("A"), 1)]
    s, eff = apply_event(s, WorkerExit("A", 20.0, "failure", "boom"), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 2, 20_000, "boom")]  # 10 s × 2^(2−1)
    s, eff = apply_event(s, RetryDue("A", 40.0, issue("A")), CONFIG)
    s, eff = apply_event(s, WorkerExit("A", 50.0, "failure", "boom"), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 3, 40_000, "boom")]
    s, eff = apply_event(s, RetryDue("A", 90.0, issue("A")), CONFIG)
    s, eff = apply_event(s, WorkerExit("A", 95.0, "failure", "boom"), CONFIG)
    assert eff == [WaitForPerson("A", "retries exhausted (2): boom")]  # the 3rd failure in a row
    assert "A" in s.held and "A" not in s.running


def test_clean_continuations_do_not_grow_the_backoff_of_a_later_failure() -> None:
    # Symphony: a normal exit schedules attempt 1, so a failure after any number of
    # clean turns backs off 20 s (attempt 2), not 10 s × 2^(turns) up to the cap
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    for n in range(6):
        s, eff = apply_event(s, WorkerExit("A", 10.0 * n, "normal"), CONFIG)
        assert eff == [ScheduleRetry("A", "A", 1, 1_000, None)]
        s, eff = apply_event(s, RetryDue("A", 10.0 * n + 1, issue("A")), CONFIG)
        assert eff == [Dispatch(issue("A"), 1)]
    s, eff = apply_event(s, WorkerExit("A", 100.0, "failure", "boom"), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 2, 20_000, "boom")]


@pytest.mark.parametrize(
    ("reason", "error", "waits_for", "held"),
    [
        ("input_required", None, "input_required", "waiting for input"),
        ("budget_exceeded", "raise it", "budget_exceeded: raise it", "budget spent"),
        ("budget_exceeded", None, "budget_exceeded", "budget spent"),
    ],
)
def test_a_question_or_a_spent_budget_waits_for_a_person_for_its_own_reason(
    reason: Literal["input_required", "budget_exceeded"],
    error: str | None,
    waits_for: str,
    held: str,
) -> None:
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    s, eff = apply_event(s, WorkerExit("A", 1.0, reason, error), CONFIG)
    assert eff == [WaitForPerson("A", waits_for)]
    assert s.held == {"A": held} and s.running == {} and s.retrying == {}


def test_a_budget_spent_for_its_period_retries_the_issue_when_the_next_begins() -> None:
    s = SchedulerState(running={"A": RunningEntry(issue("A"), 2, 1)})
    s, eff = apply_event(s, WorkerExit("A", 10.0, "budget_exceeded", "spent today", 3600), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 3, 3_600_000, "spent today")]  # not a person
    assert s.held == {} and s.retrying["A"].due_at == 3610.0
    assert s.retrying["A"].failures == 0  # a period's end is no failure


def test_retry_due_refresh_failure_and_release_rules() -> None:
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    s, _ = apply_event(s, WorkerExit("A", 0.0, "failure", "x"), CONFIG)
    _s2, eff = apply_event(s, RetryDue("A", 1.0, None, error="down"), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 2, 20_000, "retry refresh failed")]
    _, eff = apply_event(s, RetryDue("A", 1.0, None), CONFIG)
    assert [type(e).__name__ for e in eff] == ["Release"]
    _, eff = apply_event(s, RetryDue("A", 1.0, issue("A", state="Done")), CONFIG)
    assert [type(e).__name__ for e in eff] == ["CleanWorkspace", "Release"]


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (issue("A", blocked_by=(Blocker("B", "B", "Todo"),)), "blocked by B"),
        (issue("A", dispatchable=False), "not dispatchable"),
        (replace(issue("A"), labels=()), "missing required labels ['agent']"),
    ],
)
def test_a_retry_of_an_issue_no_longer_eligible_releases_it_saying_why(
    now: Issue, why: str
) -> None:
    """A failed issue blocked, reassigned or unlabelled before its retry came due was
    dispatched again (only its state was checked), or released as "not active"."""
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    s, _ = apply_event(s, WorkerExit("A", 0.0, "failure", "x"), CONFIG)
    s, eff = apply_event(s, RetryDue("A", 20.0, now), CONFIG)
    (release,) = eff
    assert type(release).__name__ == "Release" and release.reason == why  # type: ignore[attr-defined]
    assert "A" not in s.running and "A" not in s.retrying


def test_a_rate_limit_sets_a_cooldown_and_waits_at_least_that_long() -> None:
    s = SchedulerState(running={"A": RunningEntry(issue("A"), None, 0)})
    s, eff = apply_event(
        s, WorkerExit("A", 100.0, "rate_limited", "429", retry_after=120.0), CONFIG
    )
    assert s.cooldown_until == 220.0
    assert ScheduleRetry("A", "A", 1, 60_000, "429") not in eff
    assert next(e for e in eff if isinstance(e, ScheduleRetry)).delay_ms == 120_000
    assert why_not(issue("B"), s, CONFIG, now=150.0) == "provider cooldown"


def test_stalls_are_judged_on_progress_only() -> None:
    assert is_stalled(None, 0.0, 301.0, 300_000)
    assert not is_stalled(290.0, 0.0, 301.0, 300_000)
    assert not is_stalled(None, 0.0, 10_000.0, 0)  # disabled
    running = {"A": RunningEntry(issue("A"), None, 0.0, last_progress_at=None)}
    s, eff = apply_event(
        SchedulerState(running=running), Tick(400.0, (), {"A": issue("A")}), CONFIG
    )
    assert Stop("A", "stalled", clean=False) in eff and "A" in s.retrying


def test_a_due_retry_without_a_free_slot_waits_for_one() -> None:
    """Symphony: a retry whose state (or the whole dispatcher) has no free slot is
    requeued with "no available orchestrator slots", never run beside the cap."""
    a = issue("A", state="In Progress")
    s = SchedulerState(running={"A": RunningEntry(a, None, 0)})
    s, _ = apply_event(s, WorkerExit("A", 0.0, "failure", "x"), CONFIG)
    busy = {"B": RunningEntry(issue("B", state="In Progress"), None, 5.0)}
    full, eff = apply_event(replace(s, running=busy), RetryDue("A", 11.0, a), CONFIG)
    assert eff == [ScheduleRetry("A", "A", 2, 20_000, "no available orchestrator slots")]
    assert set(full.running) == {"B"} and full.retrying["A"].attempt == 2
    other = {"B": RunningEntry(issue("B"), None, 5.0)}  # a Todo agent: the state's slot is free
    _, eff = apply_event(replace(s, running=other), RetryDue("A", 11.0, a), CONFIG)
    assert eff == [Dispatch(a, 1)]
    two = {k: RunningEntry(issue(k), None, 5.0) for k in "BC"}  # the global cap (2)
    _, eff = apply_event(replace(s, running=two), RetryDue("A", 11.0, a), CONFIG)
    assert [type(e).__name__ for e in eff] == ["ScheduleRetry"]


def test_rate_limits_in_a_row_defer_the_issue_and_never_exhaust_its_retries() -> None:
    """Before: a rate limit counted as a failure, so ``max_retries`` + 1 of them in a row
    (a provider's usage cap for an hour) parked every issue as "retries exhausted" for a
    person to retry by hand. It waits the cooldown instead; failures around it count."""
    a = issue("A")
    s = SchedulerState(running={"A": RunningEntry(a, None, 0)})
    s, _ = apply_event(s, WorkerExit("A", 0.0, "failure", "tests fail"), CONFIG)
    for n in range(1, 6):
        s, eff = apply_event(s, RetryDue("A", 1000.0 * n, a), CONFIG)
        assert [type(e) for e in eff] == [Dispatch]
        s, eff = apply_event(
            s, WorkerExit("A", 1000.0 * n + 1, "rate_limited", "429", retry_after=120.0), CONFIG
        )
        assert [type(e) for e in eff] == [SetCooldown, ScheduleRetry], eff
    assert s.retrying["A"].failures == 1  # the failure before the rate limits
    for n in (6, 7):
        s, _ = apply_event(s, RetryDue("A", 1000.0 * n, a), CONFIG)
        s, eff = apply_event(s, WorkerExit("A", 1000.0 * n + 1, "failure", "again"), CONFIG)
    assert [type(e) for e in eff] == [WaitForPerson]  # the third failure: max_retries 2
