"""The durable run of one issue: workflow ``agents.issue``.

Every dispatched issue is one tether run, ``agent:<tracker>:<identifier>``
(``...:2``, ``:3`` when it is dispatched again after its run ended), queued on
the ``agents`` queue under the issue as its concurrency key: however many
dispatcher processes share the database, one worker at a time drives it. Its
attempts, retry timers, waits for a person and results are rows:

- an attempt prepares the workspace (a step; `after_create` once), runs
  `before_run`, records the config hash and the exact rendered prompt (a step),
  runs up to `max_turns` turns (each a step, its usage written to the AI call
  log with it), re-checking the issue between turns, then `after_run`;
- the scheduler's reducer decides what follows: a continuation retry (1 s) or
  a failure retry (backoff) as a durable timer (`wf.sleep`) then a re-check of
  the issue (a step), or a wait for a person (`wf.wait_for_signal`) after
  `max_retries` + 1 failures in a row, when the agent asks for input, or when the
  issue's budget is spent;
- tracker writes (the hand-off state) are steps carrying a marker.

The run's state (`wf.update_state`) says where it stands (phase, attempt, due
time, last error, workspace): `tether agents status` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._failure import decode_error
from .._workflow import Workflow
from ..errors import RunCancelledError
from ..retry import RetryPolicy
from ..store import RunStatus
from ._config import WorkflowFile
from ._errors import TrackerError, capped_wait
from ._issue import Issue, normalise_state
from ._prompt import continuation_prompt, render_prompt
from ._scheduler import (
    NO_SLOTS,
    CleanWorkspace,
    Dispatch,
    Release,
    RetryDue,
    RetryEntry,
    RunningEntry,
    ScheduleRetry,
    SchedulerState,
    SetCooldown,
    WaitForPerson,
    WorkerExit,
    apply_event,
    retry_delay,
    why_not,
)
from ._turns import TurnOutcome, run_turn
from ._workspace import WorkspaceManager
from .backends import AgentBackend, AgentEvent, TurnRequest
from .trackers import Tracker
from .trackers._http import DEFAULT_RATE_LIMIT_WAIT

if TYPE_CHECKING:
    from ..app import App

__all__ = ["ISSUE_WORKFLOW", "QUEUE", "RESUME_SIGNAL", "IssueRunner", "issue_key"]

log = logging.getLogger("tether.agents")

ISSUE_WORKFLOW = "agents.issue"
QUEUE = "agents"
RESUME_SIGNAL = "agents.resume"
COOLDOWN_SCOPE = "agents.cooldown"
TERMINAL_STOP = "issue terminal"  # the cancel reason that also removes the workspace
NO_SLOT = "no_slot"  # an attempt's outcome: its state's slots are all taken
SLOT_MUTEX_WAIT = 600.0  # seconds an attempt waits for its state's mutex (held briefly)
BLOCKED = "blocked by"  # how `why_not` begins the reason of an issue with open blockers


def issue_key(tracker: str, identifier: str) -> str:
    """The issue's name in tether: its first run id, its concurrency and budget key."""
    return f"agent:{tracker}:{identifier}"


ExitReason = Literal[
    "normal", "failure", "stalled", "input_required", "rate_limited", "budget_exceeded"
]


_EXITS: dict[str, ExitReason] = {
    "completed": "normal",
    "input_required": "input_required",
    "rate_limited": "rate_limited",
    "budget_exceeded": "budget_exceeded",
}


# what follows an attempt: the run's result (it ends), or the next attempt's
# (state, issue, attempt number, a person's answer)
_Next = dict[str, Any] | tuple[SchedulerState, Issue, int | None, str | None]


def _exit_reason(status: str, error: str | None) -> ExitReason:
    if status in _EXITS:
        return _EXITS[status]
    return "stalled" if (error or "").startswith("stalled") else "failure"


class IssueRunner:
    """Runs issues as durable runs on `app`, with the components the current
    WORKFLOW.md names (`current()` is read at each attempt: a reload applies to
    what starts next, an attempt in flight keeps what it started with)."""

    def __init__(
        self,
        app: App,
        current: Callable[[], WorkflowFile],
        tracker: Callable[[], Tracker],
        backend: Callable[[], AgentBackend],
        *,
        hold: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.app = app
        self.current = current
        self.tracker = tracker
        self.backend = backend
        # marks a tracker or backend in use, so one a reload replaced is closed after
        self.hold = hold or _unheld

    def workspaces(self) -> WorkspaceManager:
        wf = self.current()
        return WorkspaceManager(wf.workspace_root, wf.config.hooks)

    async def __call__(self, wf: Workflow, request: dict[str, Any]) -> dict[str, Any]:
        """The body of workflow ``agents.issue``."""
        try:
            return await self._work(wf, request)
        except RunCancelledError:
            # cancelled outside an attempt too (its due retry re-checking the issue, its
            # slot being taken): a tick leaves a driven run's workspace to its driver
            await self._cancelled(wf.workflow_id, Issue.from_dict(request["issue"]))
            raise

    async def _cancelled(self, run_id: str, issue: Issue) -> None:
        """The run was cancelled under its driver: for an issue that became terminal,
        its workspace (the one it recorded, else the issue's) goes, if still there."""
        row = await self.app.store.get_run(run_id)
        error = None if row is None else decode_error(row.error)
        if error is None or TERMINAL_STOP not in error.message:
            return
        recorded = _json(row.state if row is not None else None).get("workspace")
        manager = self.workspaces()
        path = Path(str(recorded)) if recorded else manager.path_for(issue.identifier)
        if path.exists():
            await manager.discard(path)

    async def _work(self, wf: Workflow, request: dict[str, Any]) -> dict[str, Any]:
        """The issue's attempts, and what follows each, until the run ends."""
        issue = Issue.from_dict(request["issue"])
        state = SchedulerState(running={issue.id: RunningEntry(issue, None, 0.0)})
        attempt: int | None = None
        answer: str | None = None
        outcome: TurnOutcome = {}
        while True:
            # a person's answer continues the session that asked for it, from the
            # totals it had reported (recorded with the turn that asked)
            asked = outcome.get("session_id") if answer is not None else None
            seen = (outcome.get("totals") or {}) if asked is not None else {}
            got = await self._attempt(wf, issue, attempt, answer, (asked, seen))
            if got.get("status") == NO_SLOT:  # its state's slots are taken: wait
                nxt = await self._no_slot(wf, issue, state, attempt)
                if isinstance(nxt, dict):
                    return nxt
                # an answer (and the session it continues) waits for the slot too
                state, issue, attempt, _ = nxt
                continue
            outcome, answer = got, None
            if outcome.get("released"):  # blocked under its agent: nothing more to do
                await self._phase(wf, issue, "released", error=outcome["released"])
                return {"issue": issue.identifier, "released": outcome["released"]}
            moved = outcome.get("handed_off")
            if moved and not self.current().config.tracker.is_active(moved):
                # the run moved its issue out of the active states itself: done, no
                # re-check (which a tick would cancel as "no longer active")
                return {
                    "issue": issue.identifier,
                    "ended": f"handed off to {moved}",
                    "handed_off": moved,
                }
            now = (await wf.now()).timestamp()
            reason = _exit_reason(outcome["status"], outcome.get("error"))
            # any backend's (a user's too): a wait beyond a day would overflow the delay
            wait = capped_wait(outcome.get("retry_after"), f"the {self.backend().name} agent")
            event = WorkerExit(issue.id, now, reason, outcome.get("error"), wait)
            state, effects = apply_event(state, event, self.current().config)
            asking = outcome.get("message") if reason == "input_required" else None
            failed = reason in ("failure", "stalled")  # counted: `run --once` tells
            nxt = await self._follow(
                wf, issue, state, effects, (attempt or 0) + 1, asking, failed=failed
            )
            if isinstance(nxt, dict):
                return nxt
            state, issue, attempt, answer = nxt

    async def _follow(
        self,
        wf: Workflow,
        issue: Issue,
        state: SchedulerState,
        effects: list[Any],
        nxt: int,
        question: str | None = None,
        *,
        failed: bool = False,
    ) -> _Next:
        """Execute what the reducer decided after an attempt: the next attempt's
        (state, issue, attempt, answer), or the run's result when it ends. `question`:
        what the agent asked, shown to the person who is to answer it; `failed`: the
        attempt failed (the run's state counts those, in ``failed_attempts``)."""
        for effect in effects:
            if isinstance(effect, SetCooldown):
                await self._cooldown(wf, effect.until - (await wf.now()).timestamp())
            elif isinstance(effect, WaitForPerson):
                payload = await self._wait_for_person(
                    wf, issue, effect.reason, question, failed=failed
                )
                fresh = SchedulerState(running={issue.id: RunningEntry(issue, nxt, 0.0)})
                return fresh, issue, nxt, _answer_of(payload)  # failures start again from 0
            elif isinstance(effect, ScheduleRetry):
                # a retry that has to wait once more loops here, never recursing: a
                # tracker down for hours must not grow the stack until the run fails
                # on Python's recursion limit (and the issue is held as failed)
                then: _Next | ScheduleRetry = effect
                while isinstance(then, ScheduleRetry):
                    state, then = await self._retry(wf, issue, state, then, failed=failed)
                    failed = False
                return then
        return {"issue": issue.identifier, "ended": "no further work"}

    async def _no_slot(
        self, wf: Workflow, issue: Issue, state: SchedulerState, attempt: int | None
    ) -> _Next:
        """The attempt found no free slot for its issue's state: as Symphony does with
        a retry that finds none, it waits its failure backoff (attempt + 1, not a
        failure: nothing ran) and asks again."""
        entry = state.running.get(issue.id)
        nxt = (attempt or 0) + 1
        delay = retry_delay("failure", nxt, self.current().config.agent.max_retry_backoff_ms)
        now = (await wf.now()).timestamp()
        waiting = replace(
            state,
            running=_without(state.running, issue.id),
            retrying={
                **state.retrying,
                issue.id: RetryEntry(
                    issue.identifier,
                    nxt,
                    now + delay / 1000,
                    NO_SLOTS,
                    entry.failures if entry is not None else 0,
                ),
            },
        )
        effect = ScheduleRetry(issue.id, issue.identifier, nxt, delay, NO_SLOTS)
        return await self._follow(wf, issue, waiting, [effect], nxt)

    async def _retry(
        self,
        wf: Workflow,
        issue: Issue,
        state: SchedulerState,
        effect: ScheduleRetry,
        *,
        failed: bool = False,
    ) -> tuple[SchedulerState, _Next | ScheduleRetry]:
        """Wait for the retry, re-check the issue, decide again: what follows, or a
        retry that has to wait once more (the tracker cannot be read, no free slot)."""
        now = await wf.now()
        due = now + timedelta(milliseconds=effect.delay_ms)
        await self._phase(
            wf,
            issue,
            "retrying",
            failed=failed,
            attempt=effect.attempt,
            error=effect.error,
            due_at=due.isoformat(),
        )
        await wf.sleep(effect.delay_ms / 1000)
        fetched: dict[str, Any] = await wf.step(
            "refresh", partial(self._refresh, issue.id, wf.workflow_id)
        )
        found = Issue.from_dict(fetched["issue"]) if fetched.get("issue") else None
        t = (await wf.now()).timestamp()
        # the agents running now, so the retry takes a free slot (per state too) or waits
        others = {
            f"busy:{n}": RunningEntry(
                Issue(id=f"busy:{n}", identifier="-", title="-", state=st), None, t
            )
            for n, st in enumerate(fetched.get("busy") or [])
        }
        # what ran beside it when it last decided is gone: this run's state holds its
        # own issue only, so those agents are counted afresh each time, never again
        state = replace(state, running={**others, **_own(state, issue.id)})
        state, effects = apply_event(
            state, RetryDue(issue.id, t, found, fetched.get("error")), self.current().config
        )
        state = replace(state, running=_own(state, issue.id))
        for e in effects:
            if isinstance(e, Dispatch):
                return state, (state, e.issue, e.attempt, None)
            if isinstance(e, ScheduleRetry):
                return state, e
            if isinstance(e, CleanWorkspace):
                _: bool = await wf.step("clean", partial(self._remove_workspace, issue.identifier))
            if isinstance(e, Release):
                await self._phase(wf, issue, "released", error=e.reason)
                return state, {"issue": issue.identifier, "released": e.reason}
        return state, {"issue": issue.identifier, "released": "nothing to do"}

    async def tracker_cooldown(self) -> datetime | None:
        """Until when the tracker is rate-limited (shared by every dispatcher on the
        database), or None."""
        row = await self.app.store.get_lock(COOLDOWN_SCOPE, f"tracker:{self.tracker().kind}")
        if row is not None and row.active_at(self.app.clock.now()):
            return row.expires_at
        return None

    async def tracker_rate_limited(self, exc: BaseException) -> datetime | None:
        """A tracker rate limit becomes a cooldown row every dispatcher respects; until
        when (None: `exc` is no rate limit)."""
        if not isinstance(exc, TrackerError) or exc.code != "tracker_rate_limited":
            return None
        wait = capped_wait(exc.retry_after, f"the {self.tracker().kind} tracker")
        wait = wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT
        if wait <= 0:
            return None
        kind = self.tracker().kind
        app = self.app
        await app.store.acquire_lock(
            COOLDOWN_SCOPE,
            f"tracker:{kind}",
            "tracker-rate-limit",
            ttl=wait,
            now=app.clock.store_time(),
            at=app.clock.now(),
        )
        log.warning("the %s tracker is rate-limited for %.0f s", kind, wait)
        return app.clock.now() + timedelta(seconds=wait)

    async def _fetch(self, issue_id: str) -> dict[str, Any]:
        until = await self.tracker_cooldown()
        if until is not None:  # nobody asks it until then: a failed refresh, retried later
            kind = self.tracker().kind
            return {"issue": None, "error": f"the {kind} tracker is rate-limited until {until}"}
        try:
            async with self.hold(self.tracker()) as tracker:
                found = await tracker.fetch_issues_by_ids([issue_id])
        except Exception as exc:  # any tracker failure is a retry, not a failed run
            await self.tracker_rate_limited(exc)
            return {"issue": None, "error": f"{type(exc).__name__}: {exc}"}
        return {"issue": found[0].to_dict() if found else None, "error": None}

    async def _refresh(self, issue_id: str, run_id: str) -> dict[str, Any]:
        """The issue as the tracker has it, and the states of the issues whose agents
        run now, this run aside: what a due retry decides on. Only a run being driven
        in an attempt holds a slot: a queued one waits for one (counting it, a retry
        holding the queue's last slot would wait for a run that waits for it)."""
        fetched = await self._fetch(issue_id)
        recorded: dict[str, str] = {}
        async for run in self.app.aiter_runs(status=RunStatus.RUNNING, workflow=ISSUE_WORKFLOW):
            if run.workflow_id == run_id:
                continue
            st = _json(run.state)
            if st.get("phase", "running") != "running":
                continue  # a retry of its own deciding right now
            issue = _json(run.input).get("issue") or {}
            key = str(st.get("issue_id") or issue.get("id") or run.workflow_id)
            recorded[key] = str(st.get("issue_state") or issue.get("state") or "")
        return {**fetched, "busy": await self._states_now(recorded)}

    async def _states_now(self, recorded: dict[str, str]) -> list[str]:
        """The states of the issues at work (issue id -> the state its run recorded) as
        the tracker has them now, when it can say. An agent moves its issue as it works
        (Todo to In Progress, as Symphony's own workflow has it): counted in the state
        its attempt started in, it held that state's slot, and the next issue of that
        state waited its backoff beside a free slot. A tracker that cannot say, or an
        issue it no longer shows, leaves the recorded state; with no cap by state, the
        states count for nothing and the tracker is not asked."""
        if not self.current().config.agent.max_concurrent_agents_by_state or not recorded:
            return list(recorded.values())
        if await self.tracker_cooldown() is not None:
            return list(recorded.values())
        try:
            async with self.hold(self.tracker()) as tracker:
                found = await tracker.fetch_issues_by_ids(list(recorded))
        except Exception as exc:  # counted as recorded: a slot is no reason to fail
            await self.tracker_rate_limited(exc)
            return list(recorded.values())
        now = {i.id: i.state for i in found}
        return [now.get(key, state) for key, state in recorded.items()]

    async def _remove_workspace(self, identifier: str) -> bool:
        manager = self.workspaces()
        return await manager.discard(manager.path_for(identifier))

    async def _phase(
        self, wf: Workflow, issue: Issue, phase: str, *, failed: bool = False, **fields: Any
    ) -> None:
        """Record where the run stands; `failed`: after an attempt that failed."""

        def change(old: Any) -> dict[str, Any]:
            base = old if isinstance(old, dict) else {}
            return {
                **base,
                "failed_attempts": int(base.get("failed_attempts") or 0) + failed,
                "phase": phase,
                "issue_id": issue.id,
                "identifier": issue.identifier,
                "issue_state": issue.state,
                "title": issue.title,
                **fields,
            }

        await wf.update_state(change)

    async def _wait_for_person(
        self, wf: Workflow, issue: Issue, reason: str, question: str | None, *, failed: bool
    ) -> Any:
        await self._phase(wf, issue, "waiting", failed=failed, reason=reason, question=question)
        return await wf.wait_for_signal(RESUME_SIGNAL)

    async def _cooldown(self, wf: Workflow, seconds: float) -> None:
        if seconds <= 0:
            return
        backend = self.backend().name

        async def write() -> bool:
            app = self.app
            await app.store.acquire_lock(
                COOLDOWN_SCOPE,
                backend,
                f"rate-limit:{wf.workflow_id}",
                ttl=seconds,
                now=app.clock.store_time(),
                at=app.clock.now(),
            )
            return True

        done: bool = await wf.step("cooldown", write)
        assert done

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(
        self,
        wf: Workflow,
        issue: Issue,
        attempt: int | None,
        answer: str | None,
        session: tuple[str | None, dict[str, Any]] = (None, {}),
    ) -> TurnOutcome:
        """One attempt; `session`: the one it continues (and the totals that session
        reported so far), or (None, {}) for a new one."""
        config = self.current()
        if not await self._take_slot(wf, issue, attempt):
            return {"status": NO_SLOT, "error": NO_SLOTS}
        try:
            prepared: dict[str, Any] = await wf.step("workspace", partial(self._ready, issue))
        except RunCancelledError:  # stopped during a hook (a long clone): tidy up as below
            await self._stopped(wf.workflow_id, self.workspaces().path_for(issue.identifier))
            raise
        if prepared.get("error"):
            if prepared.get("path"):  # the workspace exists (before_run failed): after_run
                await self._phase(wf, issue, "running", workspace=prepared["path"])  # shown
                _after: bool = await wf.step(
                    "after_run", partial(self._after_run, Path(prepared["path"]))
                )
            return {"status": "failed", "error": prepared["error"]}
        path = Path(prepared["path"])
        await self._phase(wf, issue, "running", workspace=str(path))
        try:
            prompt: dict[str, Any] = await wf.step(
                "prompt", partial(self._prompt, config, issue, attempt, answer)
            )
            if prompt.get("error"):
                return {"status": "failed", "error": prompt["error"]}
            return await self._turns(wf, issue, path, prompt, session)
        except RunCancelledError:
            await self._stopped(wf.workflow_id, path)
            raise
        finally:
            if not await self._is_cancelled(wf.workflow_id):
                _ran: bool = await wf.step("after_run", partial(self._after_run, path))

    async def _take_slot(self, wf: Workflow, issue: Issue, attempt: int | None) -> bool:
        """Start the attempt (its phase becomes ``running``) if its issue's state has a
        free slot under ``agent.max_concurrent_agents_by_state``; False if not.

        The dispatcher's tick only counts what it saw: two ticks at once (two
        dispatcher processes, or a tick beside a due retry) each saw the slot free.
        Here the decision is made under the state's mutex, across every process on
        the database: the runs whose attempt is under way in that state are counted
        (a ``running`` phase, driven or handed back mid-attempt) and this one joins
        them before the mutex is let go. A recorded step: a resume decides the same."""
        start: dict[str, Any] = {"attempt": attempt, "error": None, "due_at": None, "reason": None}
        state = normalise_state(issue.state)
        cap = self.current().config.agent.max_concurrent_agents_by_state.get(state)
        if cap is None:
            await self._phase(wf, issue, "running", question=None, **start)
            return True
        key = f"agents.slots:{hashlib.sha256(state.encode()).hexdigest()[:16]}"
        async with wf.mutex(key, timeout=SLOT_MUTEX_WAIT):
            busy: int = await wf.step("slots", partial(self._busy_in, state, wf.workflow_id))
            if busy >= cap:
                return False
            await self._phase(wf, issue, "running", question=None, **start)
        return True

    async def _busy_in(self, state: str, run_id: str) -> int:
        """How many issue runs, this one aside, are in an attempt in `state` now (the
        state each issue is in now, see `_states_now`)."""
        recorded: dict[str, str] = {}
        for status in (RunStatus.RUNNING, RunStatus.PENDING):
            async for run in self.app.aiter_runs(status=status, workflow=ISSUE_WORKFLOW):
                st = _json(run.state)
                if run.workflow_id != run_id and st.get("phase") == "running":
                    key = str(st.get("issue_id") or run.workflow_id)
                    recorded[key] = str(st.get("issue_state") or "")
        return sum(normalise_state(s) == state for s in await self._states_now(recorded))

    async def _is_cancelled(self, run_id: str) -> bool:
        row = await self.app.store.get_run(run_id)
        return row is None or row.status is RunStatus.CANCELLED

    async def _stopped(self, run_id: str, path: Path) -> None:
        """The run was cancelled under its agent (which is stopped by now): `after_run`,
        and for an issue that became terminal, its workspace removed (by this path,
        `before_remove` first), here where nothing uses it any more."""
        await self._after_run(path)
        row = await self.app.store.get_run(run_id)
        error = None if row is None else decode_error(row.error)
        if error is not None and TERMINAL_STOP in error.message:
            await self.workspaces().discard(path)

    async def _ready(self, issue: Issue) -> dict[str, Any]:
        """The workspace made ready. A cancel of the run meanwhile cancels this step,
        which kills the hook running with its process group (a long clone does not run
        on), and `_attempt` tidies up (`_stopped`)."""
        manager = self.workspaces()
        try:
            ws = await manager.ensure(issue.identifier)
        except Exception as exc:  # a failed hook or a bad path fails the attempt
            return {"path": None, "error": f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"}
        try:
            await manager.before_run(ws.path)
        except Exception as exc:  # the workspace exists: after_run still runs (Symphony)
            code = getattr(exc, "code", type(exc).__name__)
            return {"path": str(ws.path), "created": ws.created_now, "error": f"{code}: {exc}"}
        return {"path": str(ws.path), "created": ws.created_now, "error": None}

    async def _after_run(self, path: Path) -> bool:
        result = await self.workspaces().after_run(path)
        return result is None or result.ok

    def _prompt(
        self, config: WorkflowFile, issue: Issue, attempt: int | None, answer: str | None
    ) -> dict[str, Any]:
        limits = {"max_turns": config.config.agent.max_turns, "sha256": config.sha256}
        if answer is not None:
            return {**limits, "prompt": answer, "error": None}
        try:
            text = render_prompt(config.prompt, issue, attempt)
        except Exception as exc:
            return {**limits, "prompt": None, "error": f"{getattr(exc, 'code', 'error')}: {exc}"}
        return {**limits, "prompt": text, "error": None}

    async def _turns(
        self,
        wf: Workflow,
        issue: Issue,
        path: Path,
        prompt: dict[str, Any],
        continued: tuple[str | None, dict[str, Any]] = (None, {}),
    ) -> TurnOutcome:
        max_turns = int(prompt["max_turns"])
        text = str(prompt["prompt"])
        # a session's running totals are diffed against the last it reported, also
        # those it reported in the attempt that asked the question it continues from
        session, totals = continued[0], dict(continued[1])
        outcome: TurnOutcome = {"status": "completed"}
        for turn in range(1, max_turns + 1):
            if not await self._within_budget(wf, issue):
                return await self._over_budget(wf, issue)
            outcome = await wf.step(
                "turn",
                partial(self._turn, wf, issue, path, text, (turn, max_turns), session, totals),
            )
            session = outcome.get("session_id") or session
            totals = outcome.get("totals") or totals
            if outcome["status"] != "completed":
                return outcome
            if turn == max_turns:
                break
            why = await self._still_eligible(wf, issue)
            if why is not None:
                # closed, moved, reassigned or blocked during the turn (by the agent, by a
                # person): it stays where it is, no hand-off (see `_ineligible`)
                return _ineligible(outcome, why)
            text = continuation_prompt(turn + 1, max_turns)
        return await self._handoff(wf, issue, outcome)

    async def _turn(
        self,
        wf: Workflow,
        issue: Issue,
        path: Path,
        prompt: str,
        turns: tuple[int, int],
        session: str | None,
        totals: dict[str, Any],
    ) -> TurnOutcome:
        turn, max_turns = turns
        config = self.current().config
        self.workspaces().recorded(path)  # where it started, whatever the root is now
        request = TurnRequest(
            prompt=prompt,
            workspace=path,
            turn=turn,
            max_turns=max_turns,
            session_id=session,
            issue=issue.to_dict(),
            silence_timeout=config.agent.turn_timeout_ms / 1000,
            env={
                "TETHER_ISSUE_ID": issue.id,
                "TETHER_ISSUE_IDENTIFIER": issue.identifier,
                "TETHER_ISSUE_TITLE": issue.title,
                "TETHER_SESSION_ID": session or "",
                "TETHER_TURN": str(turn),
            },
        )
        backend = self.backend()
        run_id = wf.workflow_id

        async def seen(event: AgentEvent) -> None:
            if event.progress:
                log.debug(
                    "agent event %s", event.kind, extra={"run": run_id, "issue": issue.identifier}
                )

        async with self.hold(backend):  # no await since it was taken: it is not closed
            return await run_turn(
                backend,
                request,
                stall_timeout_ms=config.agent.stall_timeout_ms,
                on_event=seen,
                model=config.agent.model or backend.name,
                budget_key=issue_key(self.tracker().kind, issue.identifier),
                clock=self.app.clock,
                seen_totals=totals,
            )

    async def _within_budget(self, wf: Workflow, issue: Issue) -> bool:
        key = issue_key(self.tracker().kind, issue.identifier)
        budget = self.current().config.budget.budget(key)
        if budget is None:
            return True

        since = budget.since(self.app.clock.now())

        async def judge() -> str:
            spend = await self.app.store.ai_spend(wf.workflow_id, key, since=since)
            return budget.judge(spend)

        verdict: str = await wf.step("budget", judge)
        if verdict == "exceeded" and budget.on_exceed == "fail":
            from ..ai import BudgetExceededError

            spend = await self.app.store.ai_spend(wf.workflow_id, key, since=since)
            raise BudgetExceededError(
                f"the AI budget of {issue.identifier} is spent ({spend.usd:.4f} USD, "
                f"{spend.tokens} tokens); raise budget.max_usd or budget.max_tokens",
                spent_usd=spend.usd,
                limit_usd=budget.max_usd,
            )
        return verdict != "exceeded"

    async def _over_budget(self, wf: Workflow, issue: Issue) -> TurnOutcome:
        """The attempt's end on a spent budget: a person raises it and retries, or, for
        a budget over a period, the issue is retried when the next period begins."""
        key = issue_key(self.tracker().kind, issue.identifier)
        budget = self.current().config.budget.budget(key)
        now = await wf.now()
        until = None if budget is None else budget.until(now)
        if until is None:
            return {"status": "budget_exceeded", "error": _budget_hint(issue.identifier)}
        return {
            "status": "budget_exceeded",
            "error": f"the AI budget of {issue.identifier} is spent "
            f"{budget.period_said() if budget else ''}; retried when the next "
            f"{budget.period if budget else ''} begins, at {until.isoformat()}",
            "retry_after": (until - now).total_seconds(),
        }

    async def _still_eligible(self, wf: Workflow, issue: Issue) -> str | None:
        """Why the agent takes no further turn (None: it goes on): the issue as the
        tracker has it now, judged as the dispatcher judges a candidate (`_not_eligible`).
        A failed refresh keeps the agent going; a tick decides once the tracker answers."""
        fetched: dict[str, Any] = await wf.step("recheck", partial(self._fetch, issue.id))
        if fetched.get("error"):
            return None
        found = fetched.get("issue")
        if not found:
            return "no longer visible in the tracker"
        return self._not_eligible(Issue.from_dict(found))

    def _not_eligible(self, issue: Issue) -> str | None:
        """Why `issue` is not one an agent may work on now (None: it is): the whole of
        the dispatcher's eligibility, slots and claims aside (`why_not` with an empty
        scheduler state), so a run stops on what would not dispatch it: a state that is
        not active, an issue given to somebody else (not dispatchable), a required label
        taken off, or a `todo` issue blocked by an open one."""
        now = self.app.clock.now().timestamp()
        return why_not(issue, SchedulerState(), self.current().config, now)

    async def _handoff(self, wf: Workflow, issue: Issue, outcome: TurnOutcome) -> TurnOutcome:
        target = self.current().config.tracker.handoff_state
        if not target:
            return outcome
        move = partial(self._move, wf.workflow_id, issue, target)
        while True:
            done: Any = await wf.step("handoff", move, retry=TRACKER_WRITE_RETRY)
            if not isinstance(done, dict):  # as an earlier tether recorded it
                done = {"moved": done}
            if not done.get("wait_until"):
                break
            # the tracker is rate-limited: the hand-off waits (a durable timer) for the
            # cooldown to end, then asks again
            await wf.sleep_until(datetime.fromisoformat(done["wait_until"]))
        moved = str(done.get("moved") or "")
        if done.get("not_eligible"):
            return _ineligible(outcome, str(done["not_eligible"]))
        return {**outcome, "handed_off": moved} if moved else outcome

    async def _move(self, run_id: str, issue: Issue, target: str) -> dict[str, Any]:
        """The hand-off: ``moved`` (the state it is in now, "" if left alone), or
        ``wait_until`` while the tracker is rate-limited."""
        until = await self.tracker_cooldown()
        if until is not None:
            return {"wait_until": until.isoformat()}
        try:
            return await self._move_now(run_id, issue, target)
        except TrackerError as exc:
            until = await self.tracker_rate_limited(exc)
            if until is None:
                raise
            return {"wait_until": until.isoformat()}

    async def _move_now(self, run_id: str, issue: Issue, target: str) -> dict[str, Any]:
        """The hand-off of an issue still eligible (`_not_eligible`): the last turn, or a
        person meanwhile, may have closed, moved, reassigned or blocked it, and it is
        left where it is then (moving it would re-open it, or take it from its new
        owner); ``not_eligible`` says why."""
        async with self.hold(self.tracker()) as tracker:
            return await self._move_with(tracker, run_id, issue, target)

    async def _move_with(
        self, tracker: Tracker, run_id: str, issue: Issue, target: str
    ) -> dict[str, Any]:
        found = await tracker.fetch_issues_by_ids([issue.id])
        if not found:
            return {"moved": ""}
        if normalise_state(found[0].state) == normalise_state(target):
            return {"moved": target}
        why = self._not_eligible(found[0])
        if why is not None:
            extra = {"run": run_id, "issue": issue.identifier}
            log.info("no hand-off: %s", why, extra=extra)
            return {"moved": "", "not_eligible": why}
        await tracker.move(issue.id, target, marker=f"tether-run:{run_id}:handoff")
        return {"moved": target}


@asynccontextmanager
async def _unheld(component: Any) -> AsyncIterator[Any]:
    """No lease: a runner whose components are never replaced under it."""
    yield component


def _ineligible(outcome: TurnOutcome, why: str) -> TurnOutcome:
    """The attempt's outcome once its issue is no longer eligible: no further turn and
    no hand-off. A blocked issue also ends its run (``released``): the re-check of a
    continuation would dispatch it again, turn after turn, while Symphony leaves a
    blocked issue alone until its blockers are done (a tick dispatches it then). Any
    other reason is left to that re-check, which releases the issue (and removes the
    workspace of a terminal one)."""
    return {**outcome, "released": why} if why.startswith(BLOCKED) else outcome


def _budget_hint(identifier: str) -> str:
    return (
        f"the AI budget of {identifier} is spent; raise budget.max_usd or budget.max_tokens "
        f"in WORKFLOW.md, then tether agents retry {identifier}"
    )


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TrackerError) and exc.transient


# a tracker write that failed on the way (5xx, 429, a dropped connection) is asked
# again: it carries a marker, so repeating one that landed does nothing
TRACKER_WRITE_RETRY = RetryPolicy(attempts=6, backoff=2.0, max_delay=60.0, should_retry=_transient)


def _without(running: Any, issue_id: str) -> dict[str, RunningEntry]:
    return {k: v for k, v in running.items() if k != issue_id}


def _own(state: SchedulerState, issue_id: str) -> dict[str, RunningEntry]:
    """The run's own entry of `state.running` (none while it is not running)."""
    return {k: v for k, v in state.running.items() if k == issue_id}


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _answer_of(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("answer"), str):
        return str(payload["answer"])
    return None
