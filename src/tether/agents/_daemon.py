"""The dispatcher: poll the tracker, reconcile, dispatch, and serve the issue runs.

Each tick: re-read WORKFLOW.md if it changed (an invalid change keeps the last
good config); rebuild the scheduler's state from the database (the issue runs
that have not ended, and their recorded phase); refresh the claimed issues
and fetch the candidates; feed the reducer a `Tick`; execute its effects:
`Dispatch` queues the issue's run, `Stop` cancels it (the cancel stops the
agent's step, its process group killed: at once when this process drives the run,
within about a second when another does) and, for a terminal
issue, removes its workspace once the agent has let go of it.

Nothing lives only here: a restarted dispatcher finds its runs, their retry
timers and their waits for a person in the database. Several dispatchers on
one PostgreSQL database share the work: a run is claimed by one worker at a
time, and the issue's concurrency key keeps two runs of it from executing at
once; the queue's concurrency is `agent.max_concurrent_agents` across all of
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._info import RunInfo
from ..errors import RunFinishedError, RunNotFoundError
from ..store import JobRow, JobStatus, RunStatus
from ._config import WorkflowConfig, WorkflowFile, WorkflowWatcher, tracker_secret
from ._errors import AgentsError, IssueNotFoundError
from ._factory import make_backend, make_tracker
from ._generations import Generations, generation_id
from ._issue import Issue
from ._leases import Leases
from ._run import COOLDOWN_SCOPE, ISSUE_WORKFLOW, QUEUE, RESUME_SIGNAL, IssueRunner, issue_key
from ._scheduler import (
    Dispatch,
    Log,
    RetryEntry,
    RunningEntry,
    SchedulerState,
    Stop,
    Tick,
    apply_event,
    why_not,
)
from ._status_view import IssueStatus, as_live, issue_view, state_view
from ._workspace import reap_orphan
from .backends import AgentBackend
from .trackers import Tracker

if TYPE_CHECKING:
    from ..app import App
    from ..worker import ServerlessHost, Worker

__all__ = ["Dispatcher", "IssueStatus", "TickReport"]

log = logging.getLogger("tether.agents")

STOPPED_BY_PERSON = "stopped by a person"
# how the dispatcher's own cancels read (`Stop` of a tick: "issue <reason>"); a run
# cancelled any other way was stopped by a person and holds its issue until `retry`
_RECONCILED = ("issue terminal", "issue no longer active", "issue stalled")
_CANCELLED = frozenset({RunStatus.CANCELLED, RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED})
CHANGED_SINCE_POLL = "changed since the poll"
CLEANUP_EVERY = 20  # ticks between runs of the workspace retention chore
CLEANUP_LIMIT = 900  # seconds one run of it may take
# a job's run neither parked nor ended: it handed itself back (the App drains)
_HANDED_BACK = frozenset({RunStatus.PENDING.value, RunStatus.RUNNING.value})


@dataclass
class TickReport:
    """What a tick (or `run_once`) did; `ok` is False when something went wrong."""

    dispatched: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # identifier -> why not
    errors: list[str] = field(default_factory=list)  # the tracker could not be read ...
    failed: list[str] = field(default_factory=list)  # run_once: runs (or attempts) that failed

    @property
    def ok(self) -> bool:
        """No error and no failed run: what `tether agents run --once` exits 0 on."""
        return not self.errors and not self.failed


class Dispatcher:
    """The agent dispatcher on `app`, configured by a WORKFLOW.md.

    `tracker` and `backend` replace the ones WORKFLOW.md names (tests pass a
    `MemoryTracker` and a `MockBackend`). Any App does: an issue run parks on its
    retry timers whatever the App's `inline_wait` (its other workflows keep it), giving
    its slot of the queue to the next run rather than waiting the timer out in it."""

    def __init__(
        self,
        app: App,
        workflow: str | Path | WorkflowFile | WorkflowWatcher,
        *,
        tracker: Tracker | None = None,
        backend: AgentBackend | None = None,
    ) -> None:
        self.app = app
        if isinstance(workflow, WorkflowWatcher | WorkflowFile):
            self.watcher: WorkflowWatcher | None = (
                workflow if isinstance(workflow, WorkflowWatcher) else None
            )
            self._fixed = workflow.current if isinstance(workflow, WorkflowWatcher) else workflow
        else:
            self.watcher = WorkflowWatcher(workflow)
            self._fixed = self.watcher.current
        self._tracker = tracker
        self._backend = backend
        self._components: tuple[str, Tracker, AgentBackend] | None = None
        self._keys = ("", "")  # what the tracker and backend were built from
        self._wake: asyncio.Event | None = None  # set by `refresh`: tick now
        self._worker: Worker | None = None  # the one `serve` runs, resized on reload
        self._asked_at: datetime | None = None
        self._refused: str | None = None  # why WORKFLOW.md was refused, once logged
        self._tick_errors: list[str] = []  # the last tick's, for the status API
        self._generations = Generations(app)  # each issue's newest run, found in few reads
        self._leases = Leases()  # what a reload replaced is closed once nothing uses it
        self.runner = IssueRunner(
            app, self.config, self.tracker, self.backend, hold=self._leases.hold
        )
        # its retries park, whatever the App's inline_wait: waited out inline, a 1 s
        # continuation held the queue's slot, and `run_once` on a default App never returned
        app.workflow(name=ISSUE_WORKFLOW, inline_wait=0)(self.runner)
        app.queue(QUEUE, concurrency=self.config().config.agent.max_concurrent_agents)

    # -- configuration and components ---------------------------------------------------

    def config(self) -> WorkflowFile:
        return self.watcher.current if self.watcher is not None else self._fixed

    def reload(self) -> bool:
        """Re-read WORKFLOW.md if it changed; True if a new config applies. A change
        the tracker or the agent backend cannot be built from (an api model whose
        provider has no key) is refused as an invalid one is: it kept every tick
        failing, reconciliation too, and every agent's next turn."""
        before = self.watcher.current if self.watcher is not None else None
        if self.watcher is None or not self.watcher.check():
            self._said_refused()
            return False
        try:
            self._built()
        except Exception as exc:
            self.watcher.current = before or self.watcher.current
            self.watcher.error = f"{self.watcher.path}: {type(exc).__name__}: {exc}"
            self._said_refused()
            return False
        self._refused = None
        log.info("WORKFLOW.md reloaded", extra={"sha256": self.config().sha256[:12]})
        most = self.config().config.agent.max_concurrent_agents
        self.app.queue(QUEUE, concurrency=most)
        if self._worker is not None:  # the serving worker takes as many at once too
            self._worker.resize(most)
        return True

    def _said_refused(self) -> None:
        """Log why WORKFLOW.md's change was refused: once, not at every tick."""
        error = self.watcher.error if self.watcher is not None else None
        if error and error != self._refused:
            log.warning("WORKFLOW.md change refused, keeping the last good config: %s", error)
        self._refused = error

    def broken(self) -> str | None:
        """Why WORKFLOW.md, as it is now, does not load (None: it does). Until it is
        fixed no issue is dispatched anew (Symphony); what runs goes on under the last
        good config, and reconciliation too."""
        return self.watcher.error if self.watcher is not None else None

    def _built(self) -> tuple[Tracker, AgentBackend]:
        """The tracker and backend of the current config, each built anew only when
        the settings it is built from changed: a new backend on every edit (a prompt's)
        forgot the api backend's conversations, so an agent's next turn, or a person's
        answer, started one afresh without what was said before."""
        wf = self.config()
        if self._components is None or self._components[0] != wf.sha256:
            keys = _component_keys(wf)
            made = self._components
            tracker = self._tracker or (
                made[1] if made and self._keys[0] == keys[0] else make_tracker(wf)
            )
            backend = self._backend or (
                made[2] if made and self._keys[1] == keys[1] else make_backend(wf, self.app.ai)
            )
            if made is not None:
                self._retire(made[1], tracker, self._tracker)
                self._retire(made[2], backend, self._backend)
            self._components, self._keys = (wf.sha256, tracker, backend), keys
        return self._components[1], self._components[2]

    def _retire(self, old: object, new: object, given: object) -> None:
        """Close `old` once nothing uses it, if a reload replaced it. Not one passed
        in (its owner closes it), nor an api backend on the App's providers (`ai=`):
        their clients are the new backend's too, maybe in a turn; the App closes them."""
        shares = self.app.ai is not None and getattr(old, "providers", None) is self.app.ai
        if old is not new and old is not given and not shares:
            self._leases.retire(old)

    def tracker(self) -> Tracker:
        return self._built()[0]

    def backend(self) -> AgentBackend:
        return self._built()[1]

    def key(self, identifier: str) -> str:
        return issue_key(self.tracker().kind, identifier)

    # -- the state, from the database ---------------------------------------------------

    async def _issue_runs(self) -> list[tuple[Any, dict[str, Any]]]:
        """The issue runs that have not ended, with their recorded state."""
        found = []
        for status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING):
            async for run in self.app.aiter_runs(status=status, workflow=ISSUE_WORKFLOW):
                found.append((run, _state(run.state)))
        return found

    async def _held(self, candidates: list[Issue], live: set[str]) -> dict[str, str]:
        """Issues whose latest run ended in a way that needs a person: stopped by
        one, or failed. They are not dispatched again until `retry`."""
        held: dict[str, str] = {}
        asked = [i for i in candidates if i.id not in live]
        newest = await self._generations.newest_of([self.key(i.identifier) for i in asked])
        for issue in asked:  # one query for every candidate, not a read each
            _, latest = newest.get(self.key(issue.identifier), (0, None))
            if latest is None:
                continue
            if latest.status is RunStatus.FAILED:
                held[issue.id] = "its run failed; tether agents retry to dispatch it again"
            elif latest.status in _CANCELLED and _cancelled_for(latest, STOPPED_BY_PERSON):
                held[issue.id] = "stopped by a person; tether agents retry to dispatch it again"
            elif latest.status in _CANCELLED and not _reconciled(latest):
                # `tether cancel <run>`: a person's stop too, not a reason to start afresh
                # (with its failures in a row forgotten) at the next tick
                held[issue.id] = "its run was cancelled; tether agents retry to dispatch it again"
        return held

    @staticmethod
    def state_of(run: RunInfo, state: Any) -> dict[str, Any]:
        """The run's recorded state as a reader should see it (an ended run's, as it
        ended; an answered or retried one's, as queued: see `as_live`)."""
        return as_live(run, state if isinstance(state, dict) else {})

    async def latest_run(self, identifier: str) -> Any:
        """The issue's newest run (`IssueNotFoundError`, a RunNotFoundError, if it never
        ran)."""
        run = await self._latest_run(identifier)
        if run is None:
            raise IssueNotFoundError(identifier, self.key(identifier))
        return run

    async def _latest_run(self, identifier: str) -> RunInfo | None:
        _, run = await self._generations.newest(self.key(identifier))
        return run

    async def state(self, candidates: list[Issue]) -> tuple[SchedulerState, dict[str, str]]:
        """The scheduler's state rebuilt from the runs; and issue id -> run id."""
        running: dict[str, RunningEntry] = {}
        retrying: dict[str, RetryEntry] = {}
        held: dict[str, str] = {}
        runs: dict[str, str] = {}
        for run, st in await self._issue_runs():
            issue = Issue.from_dict(
                json.loads(run.input or "{}").get("issue")
                or {"id": "?", "identifier": "?", "title": "?", "state": ""}
            )
            runs[issue.id] = run.workflow_id
            phase = st.get("phase")
            if run.status is RunStatus.WAITING and phase == "waiting":
                held[issue.id] = str(st.get("reason") or "waiting for a person")
            elif run.status is RunStatus.WAITING and phase == "retrying":
                retrying[issue.id] = RetryEntry(
                    issue.identifier, int(st.get("attempt") or 1), 0.0, st.get("error")
                )
            else:
                issue = Issue.from_dict(
                    {**issue.to_dict(), "state": st.get("issue_state", issue.state)}
                )
                running[issue.id] = RunningEntry(
                    issue, st.get("attempt"), self.app.clock.now().timestamp()
                )
        held.update(await self._held(candidates, set(runs)))
        cooldown = await self.app.store.get_lock(COOLDOWN_SCOPE, self.backend().name)
        until = None
        if cooldown is not None and cooldown.active_at(self.app.clock.now()):
            until = cooldown.expires_at.timestamp()
        # stall is judged by the process driving each agent (it sees the events);
        # here a running entry counts as just seen so a tick never double-stops it
        return SchedulerState(
            running=running, retrying=retrying, held=held, cooldown_until=until
        ), runs

    # -- a tick -------------------------------------------------------------------------

    async def tick(self) -> TickReport:
        """Reconcile the claimed issues, then dispatch eligible ones in order."""
        report, _ = await self._tick()
        self._tick_errors = list(report.errors)
        return report

    async def _tick(self) -> tuple[TickReport, list[Issue]]:
        """A tick's report, and the candidates it saw."""
        self.reload()
        report = TickReport()
        if self.broken() is not None:  # reconciliation goes on under the last good one
            report.errors.append(f"no new dispatch until it is fixed: {self.broken()}")
        config = self.config().config
        await self._leases.close_idle()  # what the reload replaced, unless still in use
        tracker = self.tracker()
        until = await self.tracker_cooldown()
        if until is not None:  # the tracker said "slow down": nobody asks it until then
            report.errors.append(f"the {tracker.kind} tracker is rate-limited until {until}")
            return report, []
        candidates: list[Issue] | None
        try:
            async with self._leases.hold(self.tracker()) as tracker:
                candidates = await tracker.fetch_issues_by_states(config.tracker.active())
        except Exception as exc:
            report.errors.append(f"fetching candidates: {exc}")
            candidates = None
            await self._rate_limited(exc)
        state, runs = await self.state(candidates or [])
        claimed = [i for i in (*state.running, *state.retrying, *state.held) if i in runs]
        refreshed = await self._refreshed(claimed, report)
        if refreshed is not None:  # held without a run: as the candidate fetch saw them
            refreshed.update(
                {c.id: c for c in candidates or [] if c.id in state.held and c.id not in runs}
            )
        if refreshed is not None and candidates is not None:  # the fresher snapshot wins
            candidates = [refreshed.get(c.id, c) for c in candidates]
        now = self.app.clock.now().timestamp()
        _, effects = apply_event(
            state,
            Tick(now, tuple(candidates) if candidates is not None else None, refreshed),
            config,
        )
        for effect in effects:
            try:
                await self._execute(effect, runs, report)
            except Exception as exc:  # one effect that failed never skips the others
                log.exception("tick: %r failed", effect)
                report.errors.append(f"{type(effect).__name__}: {exc}")
        _skipped(report, candidates or [], state, config, now)
        return report, candidates or []

    async def _refreshed(self, claimed: list[str], report: TickReport) -> dict[str, Issue] | None:
        """The claimed issues as the tracker has them now; None if it cannot say (a
        rate limit met by this tick's poll included: it is not asked again)."""
        until = await self.tracker_cooldown()
        if until is not None:
            report.errors.append(f"refreshing claimed issues: rate-limited until {until}")
            return None
        try:
            async with self._leases.hold(self.tracker()) as tracker:
                return {i.id: i for i in await tracker.fetch_issues_by_ids(claimed)}
        except Exception as exc:
            report.errors.append(f"refreshing claimed issues: {exc}")
            await self._rate_limited(exc)
            return None

    async def tracker_cooldown(self) -> datetime | None:
        """Until when the tracker is rate-limited (shared by every dispatcher on the
        database, and by the issue runs), or None."""
        return await self.runner.tracker_cooldown()

    async def _rate_limited(self, exc: Exception) -> None:
        """A tracker rate limit becomes a cooldown row every dispatcher respects."""
        await self.runner.tracker_rate_limited(exc)

    async def _execute(self, effect: Any, runs: dict[str, str], report: TickReport) -> None:
        if isinstance(effect, Dispatch):
            if self.broken() is not None:
                report.skipped[effect.issue.identifier] = f"WORKFLOW.md: {self.broken()}"
                return
            if not await self._still_eligible(effect.issue):
                report.skipped[effect.issue.identifier] = CHANGED_SINCE_POLL
                return
            run_id = await self.dispatch(effect.issue)
            report.dispatched.append(effect.issue.identifier)
            log.info("dispatched", extra={"issue": effect.issue.identifier, "run": run_id})
        elif isinstance(effect, Stop) and effect.issue_id in runs:
            run_id = runs[effect.issue_id]
            with contextlib.suppress(RunFinishedError, RunNotFoundError):
                await self.app.acancel(run_id, f"issue {effect.reason}")
            report.stopped.append(run_id)
            log.info("stopped", extra={"run": run_id, "reason": effect.reason})
            if effect.clean and not await self._driven(run_id):
                await self.remove_workspace(run_id)  # else its driver removes it once stopped
        elif isinstance(effect, Log) and effect.issue_id is not None:
            log.info(effect.message, extra={"issue": effect.issue_id})
        elif isinstance(effect, Log):  # the tick's error, logged once while it lasts, says it
            log.debug(effect.message)

    async def _driven(self, run_id: str) -> bool:
        """A worker holds the run's job: its driver sees the cancel and removes the
        workspace once its agent let go. Asked after the cancel, not before: a run read
        as queued or parked may have been claimed since (the tick then removed the
        workspace under its agent, and its `after_run` found none), one read as running
        may have parked since (nobody removed it)."""
        jobs = await self.app.store.list_jobs(workflow_id=run_id, status=JobStatus.CLAIMED.value)
        return any(job.status is JobStatus.CLAIMED for job in jobs)

    async def _still_eligible(self, issue: Issue) -> bool:
        """Before dispatching an issue whose earlier run has ended, ask the tracker
        again (Symphony's stale-dispatch check): that run may have handed the issue
        off after this tick's poll, and a second run must not start on the old
        snapshot. A first dispatch needs no second look."""
        latest = await self._latest_run(issue.identifier)
        if latest is None:
            return True
        if not latest.status.terminal:
            return True  # dispatch() finds it and does nothing
        try:
            async with self._leases.hold(self.tracker()) as tracker:
                found = await tracker.fetch_issues_by_ids([issue.id])
        except Exception as exc:
            await self._rate_limited(exc)
            return False  # not sure: the next tick decides
        if not found:
            return False
        # the whole of a tick's eligibility (slots aside): an issue given to somebody
        # else, or blocked, since the poll gets no new agent either
        now = self.app.clock.now().timestamp()
        return why_not(found[0], SchedulerState(), self.config().config, now) is None

    async def dispatch(self, issue: Issue) -> str:
        """Queue the issue's run: its first, or the next one if the last has ended."""
        base = self.key(issue.identifier)
        n, latest = await self._generations.newest(base)
        if latest is not None and not latest.status.terminal:
            return latest.workflow_id  # already there: dispatching twice is a no-op
        return await self.app.asubmit(
            self.runner,
            {"issue": issue.to_dict(), "generation": n + 1},
            workflow_id=generation_id(base, n + 1),
            queue=QUEUE,
            concurrency_key=base,
            tags=("agents", base),
        )

    async def remove_workspace(self, run_id: str) -> bool:
        """Remove a run's workspace by the path it recorded (`before_remove` first).
        Only for a run no process drives: a driven one removes its own once its
        agent stopped. A run that recorded none (queued behind an earlier run of its
        issue, or its `before_run` failed) removes the issue's workspace by name:
        one an earlier run or attempt left must not outlive a terminal issue."""
        run = await self.app.aget_run(run_id)
        recorded = _state(run.state).get("workspace")
        manager = self.runner.workspaces()
        if recorded:
            return await manager.discard(Path(recorded))
        return await manager.discard(manager.path_for(_identifier_of(run)))

    async def cleanup(self) -> list[str]:
        """The retention chore: remove the workspaces of terminal issues, and those
        past `workspace.max_age_days` or beyond `workspace.max_total_mb` (oldest
        first), never one whose issue has a run that has not ended."""
        config = self.config().config
        terminal: list[Issue] = []
        until = await self.tracker_cooldown()
        if until is not None:  # nobody asks the tracker until then
            log.warning(
                "cleanup: the tracker is rate-limited until %s; sweeping by age only", until
            )
        else:
            try:
                async with self._leases.hold(self.tracker()) as tracker:
                    terminal = await tracker.fetch_issues_by_states(config.tracker.terminal())
            except Exception as exc:
                await self._rate_limited(exc)
                log.warning("cleanup: cannot list terminal issues (%s); sweeping by age only", exc)
        manager = self.runner.workspaces()
        busy = set()
        for run, st in await self._issue_runs():
            if st.get("workspace"):
                busy.add(Path(str(st["workspace"])).name)
            # a run queued for its issue (sent back after a review) has recorded none yet:
            # the workspace an earlier run of it left is the one it is about to use
            busy.add(manager.path_for(_identifier_of(run)).name)
        doomed = await asyncio.to_thread(  # it walks folders: not on the event loop
            partial(
                manager.sweep,
                remove_keys={manager.path_for(i.identifier).name for i in terminal},
                busy=busy,
                max_age_days=config.workspace.max_age_days,
                max_total_mb=config.workspace.max_total_mb,
            )
        )
        for path in doomed:
            await manager.discard(path)
        return [p.name for p in doomed]

    async def _cleanup_in_background(self) -> None:
        """The retention chore as `serve` runs it: bounded (a hung `before_remove` is
        killed at `hooks.timeout_ms` anyway), its failures logged, never raised."""
        try:
            await asyncio.wait_for(self.cleanup(), CLEANUP_LIMIT)
        except TimeoutError:
            log.warning(
                "cleanup: still busy after %d s; stopped, it runs again later", CLEANUP_LIMIT
            )
        except Exception:
            log.exception("cleanup failed")

    # -- a person's verbs ---------------------------------------------------------------

    async def answer(self, identifier: str, text: str) -> str:
        """Answer an agent waiting for input; the run resumes in the same workspace.
        Refused (`AgentsError`) unless the run waits for a person, and when it waits
        for a bigger budget: an answer cannot raise it."""
        run = await self.latest_run(identifier)
        st = _state(run.state)
        if run.status is not RunStatus.WAITING or st.get("phase") != "waiting":
            phase = st.get("phase") if not run.status.terminal else None  # ended: as it ended
            doing = run.status.value + (f", {phase}" if phase else "")
            raise AgentsError(
                f"{identifier} is not waiting for a person (its run is {doing}); "
                "tether agents status shows what it waits for",
                code="not_waiting",
            )
        if str(st.get("reason") or "").startswith("budget_exceeded"):
            raise AgentsError(
                f"{identifier} waits because its AI budget is spent, not for an answer; "
                "raise budget.max_usd or budget.max_tokens in WORKFLOW.md, then "
                f"tether agents retry {identifier}",
                code="budget_exceeded",
            )
        await self.app.asignal(run.workflow_id, RESUME_SIGNAL, {"answer": text})
        return str(run.workflow_id)

    async def retry(self, identifier: str) -> str:
        """Try again now: wake a run waiting for a person, or dispatch a new run of an
        issue whose last run ended, if the tracker says it is still eligible."""
        run = await self.latest_run(identifier)
        if run.status is RunStatus.WAITING and _state(run.state).get("phase") == "waiting":
            await self.app.asignal(run.workflow_id, RESUME_SIGNAL, {"retry": True})
            return str(run.workflow_id)
        if not run.status.terminal:
            raise AgentsError(
                f"{identifier} is already running ({run.status.value})", code="already_running"
            )
        issue = Issue.from_dict(json.loads(run.input or "{}")["issue"])
        return await self.dispatch(await self._eligible_again(issue))

    async def _eligible_again(self, issue: Issue) -> Issue:
        """The issue as the tracker has it now, if a tick would dispatch it (its state,
        labels and blockers; slots aside: the run queues); else `AgentsError`, so a
        `retry` never starts an agent on an issue that is done or handed off."""
        kind = self.tracker().kind
        try:
            until = await self.tracker_cooldown()
            if until is not None:  # nobody asks it until then
                raise AgentsError(f"the {kind} tracker is rate-limited until {until}")
            async with self._leases.hold(self.tracker()) as tracker:
                found = await tracker.fetch_issues_by_ids([issue.id])
        except Exception as exc:
            await self._rate_limited(exc)
            raise AgentsError(
                f"cannot check {issue.identifier} in the {kind} tracker before dispatching "
                f"it again ({exc}); try again once the tracker answers",
                code="tracker_request",
            ) from None
        if not found:
            raise AgentsError(
                f"{issue.identifier} is no longer in the {kind} tracker (deleted, or not "
                "visible to this token); there is nothing to retry",
                code="not_eligible",
            )
        config = self.config().config
        why = why_not(found[0], SchedulerState(), config, self.app.clock.now().timestamp())
        if why is None:
            return found[0]
        fix = (
            f"move it to an active state ({', '.join(config.tracker.active())}) first"
            if not config.tracker.is_active(found[0].state)
            else "fix that in the tracker first"
        )
        raise AgentsError(
            f"{issue.identifier} is not dispatched again: {why}; {fix}", code="not_eligible"
        )

    async def stop(self, identifier: str) -> str:
        """Stop the issue's agent and keep it from being dispatched until `retry`. The
        dispatcher driving it kills its agent; one a killed dispatcher left behind is
        killed here (by the process group recorded beside its workspace)."""
        run = await self.latest_run(identifier)
        await self.app.acancel(run.workflow_id, STOPPED_BY_PERSON)
        workspace = _state(run.state).get("workspace")
        if workspace:
            await reap_orphan(Path(str(workspace)))
        return str(run.workflow_id)

    async def status(self, *, all_runs: bool = False) -> list[IssueStatus]:
        """The issue runs that have not ended (or every one, with `all_runs`)."""
        rows = []
        if all_runs:
            runs = [
                (r, as_live(r, _state(r.state)))
                async for r in self.app.aiter_runs(workflow=ISSUE_WORKFLOW)
            ]
        else:
            runs = [(r, as_live(r, st)) for r, st in await self._issue_runs()]
        ids = [run.workflow_id for run, _ in runs]
        by_run = {
            u.group: u for u in await self.app.store.ai_usage(workflow_ids=ids, group_by="run")
        }
        for run, st in runs:
            usage = by_run.get(run.workflow_id)  # one query for every issue, not one each
            rows.append(
                IssueStatus(
                    identifier=str(st.get("identifier") or _identifier_of(run)),
                    run_id=run.workflow_id,
                    status=run.status.value,
                    phase=str(st.get("phase") or "queued"),
                    attempt=st.get("attempt"),
                    reason=_why(st),
                    due_at=st.get("due_at"),
                    workspace=st.get("workspace"),
                    tokens=0 if usage is None else usage.input_tokens + usage.output_tokens,
                    cost_usd=None if usage is None else usage.known_cost_usd,
                    issue_state=st.get("issue_state"),
                    title=st.get("title"),
                    question=st.get("question"),
                    ended=st.get("ended"),
                    ended_at=st.get("ended_at"),
                )
            )
        return rows

    async def state_report(self) -> dict[str, Any]:
        """Symphony's ``/api/v1/state``: issues running, retrying and waiting, totals;
        and `errors`, this dispatcher's last tick's (the tracker cannot be read,
        WORKFLOW.md is refused ...): without them a dispatcher that dispatches nothing
        looked idle and well."""
        return {**await state_view(self), "errors": list(self._tick_errors)}

    async def issue_report(self, identifier: str) -> dict[str, Any] | None:
        """Symphony's ``/api/v1/<identifier>`` (None: the issue never ran)."""
        return await issue_view(self, identifier)

    # -- serving ------------------------------------------------------------------------

    async def run_once(self) -> TickReport:
        """Fire the retries due by now, tick, then drive the runs made runnable until
        each parks or ends (what `tether agents run --once` does). Each run works at
        most one attempt: timers due later, even a second later, stay in the database
        for the next call, so a loop of `run_once` calls never hangs in one."""
        from ..worker import ServerlessHost

        await self.app.afire_due_timers()  # retries that fell due while nobody ran
        report, candidates = await self._tick()
        self._tick_errors = list(report.errors)
        await self._drive(ServerlessHost(self.app, queues=(QUEUE,)), report)
        # why each candidate is not worked on, as things stand now rather than at the
        # poll: a run answered then is not "already running" if it parked again since
        state, _ = await self.state(candidates)
        now = self.app.clock.now().timestamp()
        report.skipped = {
            k: v
            for k, v in report.skipped.items()
            if v == CHANGED_SINCE_POLL or v.startswith("WORKFLOW.md: ")
        }
        _skipped(report, candidates, state, self.config().config, now)
        return report

    async def _drive(self, host: ServerlessHost, report: TickReport) -> None:
        """Drive the queued runs until each parks or ends, as many at once as
        `agent.max_concurrent_agents` (the queue's concurrency caps the claims), each
        lane taking the next job as its run parks; those that failed (or an attempt of
        which did) go in `report.failed`. One after another, a `--once` from cron with
        ten issues took ten agents' time."""
        stopping = asyncio.Event()  # a run handed itself back: the App is stopping

        async def lane() -> None:
            while not stopping.is_set():
                # no timer is fired here: one that falls due while this pass drives
                # other runs (a continuation is due 1 s after its attempt) waits for the
                # next run_once, else agents slower than that kept it going forever
                jobs = await host.aclaim(1)
                if not jobs:
                    return
                if await self._drive_job(host, jobs[0], report):
                    # the run gave itself back unfinished and its job is queued again;
                    # claimed once more, it came straight back, in a loop, until the
                    # process died holding its job
                    stopping.set()

        async with asyncio.TaskGroup() as lanes:
            for _ in range(self.config().config.agent.max_concurrent_agents):
                lanes.create_task(lane())

    async def _drive_job(self, host: ServerlessHost, job: JobRow, report: TickReport) -> bool:
        """Drive one claimed job's run until it parks or ends; True if it was handed back."""
        run_id = job.workflow_id
        before = await self._failed_attempts(run_id)
        done = await host.ahandle_job(job)
        # the run failed, or an attempt of it did (it retries or waits for a person)
        failed = done.status == "failed" or await self._failed_attempts(run_id) > before
        if failed and run_id not in report.failed:
            report.failed.append(run_id)
        return done.status in _HANDED_BACK

    async def _failed_attempts(self, run_id: str) -> int:
        """How many attempts of the run failed so far (its state counts them)."""
        try:
            run = await self.app.aget_run(run_id)
        except RunNotFoundError:
            return 0
        return int(_state(run.state).get("failed_attempts") or 0)

    def refresh(self) -> dict[str, Any]:
        """Ask a serving dispatcher to poll and reconcile now rather than at its next
        interval (Symphony's ``POST /api/v1/refresh``); requests made before that tick
        started are one (``coalesced``)."""
        wake = self._wake = self._wake or asyncio.Event()
        coalesced = wake.is_set()
        if not coalesced:
            self._asked_at = datetime.now(UTC)
            wake.set()
        return {
            "queued": True,
            "coalesced": coalesced,
            "requested_at": (self._asked_at or datetime.now(UTC)).isoformat(),
            "operations": ["poll", "reconcile"],
        }

    async def _pause(self, stop: asyncio.Event, serving: asyncio.Future[None]) -> None:
        """Until the next tick: the poll interval, a `refresh`, `stop`, or the end of
        the worker `serving` the runs."""
        wake = self._wake = self._wake or asyncio.Event()
        interval = self.config().config.polling.interval_ms / 1000
        waits: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(wake.wait()),
        }
        try:
            await asyncio.wait(
                {*waits, serving}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            wake.clear()  # before the next await: a refresh from now on asks for another tick
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def serve(self, *, stop: asyncio.Event | None = None) -> None:
        """Tick every `polling.interval_ms` and work the issue runs until `stop` is set
        (a worker on the ``agents`` queue in this process, with maintenance: due
        retry timers fire here or in any other dispatcher sharing the database)."""
        from ..worker import Worker

        stop = stop or asyncio.Event()
        agent = self.config().config.agent
        worker = self._worker = Worker(
            self.app,
            queues=[QUEUE],
            concurrency=agent.max_concurrent_agents,
            maintenance_interval=1.0,
            grace=agent.shutdown_grace_ms / 1000,  # then each agent's turn is cancelled
        )
        serving = asyncio.ensure_future(worker.run(install_signals=False))
        ticks = 0
        cleaning: asyncio.Future[None] | None = None
        said: set[str] = set()  # the last tick's errors: one that lasts is logged once
        try:
            # a worker that ended unasked (its database is no tether one ...) ends the
            # serving, its error raised below: polling on dispatched runs nobody worked
            while not stop.is_set() and not serving.done():
                # at start-up, then now and then; beside the ticks, never holding one up
                if ticks % CLEANUP_EVERY == 0 and (cleaning is None or cleaning.done()):
                    cleaning = asyncio.ensure_future(self._cleanup_in_background())
                ticks += 1
                try:
                    report = await self.tick()
                    for err in report.errors:
                        if err not in said:
                            log.warning("tick: %s", err)
                    said = set(report.errors)
                except Exception:
                    log.exception("tick failed")
                await self._pause(stop, serving)
        finally:
            if cleaning is not None:
                cleaning.cancel()  # a hook it runs is killed with its process group
                await asyncio.gather(cleaning, return_exceptions=True)
            worker.stop()
            try:
                await serving
            finally:  # the worker's error raised, the backend's clients still let go
                await self._leases.close_idle()  # its runs ended: nothing holds any now
                close = getattr(self._components[2] if self._components else None, "aclose", None)
                if close is not None:  # a backend holding clients (api) lets them go
                    await close()


def _skipped(
    report: TickReport,
    candidates: list[Issue],
    state: SchedulerState,
    config: WorkflowConfig,
    now: float,
) -> None:
    """Say in `report` why each candidate not dispatched by it waits, given `state`."""
    for issue in candidates:
        reason = why_not(issue, state, config, now)
        if reason is not None and issue.identifier not in report.dispatched:
            report.skipped[issue.identifier] = reason


# the agent settings a backend is built from (`make_backend`): the others are limits
_BACKEND_FIELDS = frozenset(
    {"backend", "command", "model", "max_tool_rounds", "command_timeout_ms", "max_sessions"}
)


def _component_keys(wf: WorkflowFile) -> tuple[str, str]:
    """What the config's tracker and backend are built from, each as one string (the
    tracker's secret as its digest: a new token builds a new tracker)."""
    t = wf.config.tracker
    secret = hashlib.sha256((tracker_secret(t) or "").encode()).hexdigest()
    tracker = json.dumps([t.model_dump(mode="json"), secret], sort_keys=True, default=str)
    a = wf.config.agent
    backend = json.dumps(
        [a.model_dump(mode="json", include=set(_BACKEND_FIELDS)), a.script],
        sort_keys=True,
        default=str,
    )
    return tracker, backend


def _state(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _identifier_of(run: RunInfo) -> str:
    """The issue a run works on, from its input (a queued run has no state yet)."""
    try:
        issue = json.loads(run.input or "{}").get("issue") or {}
    except (ValueError, AttributeError):
        issue = {}
    return str(issue.get("identifier") or run.workflow_id)


def _why(st: dict[str, Any]) -> str | None:
    """What a run waits for or last failed on; with the agent's question, if it asked."""
    reason = st.get("reason") or st.get("error")
    if st.get("phase") == "waiting" and st.get("question"):
        return f"{reason}: {st['question']}"
    return None if reason is None else str(reason)


def _reconciled(run: RunInfo) -> bool:
    """The run was cancelled by a tick (its issue left the active states, or stalled)."""
    return any(_cancelled_for(run, reason) for reason in _RECONCILED)


def _cancelled_for(run: RunInfo, reason: str) -> bool:
    """The run was cancelled with `reason` (the message its cancellation recorded)."""
    error = run.error_record
    return error is not None and reason in error.message
