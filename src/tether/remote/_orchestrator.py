"""The orchestrator's side: a remote workflow is an ordinary workflow of the App.

`remote_workflow` registers a workflow whose body is a drive loop: send one
invocation with the run's journal, record what comes back, park on the
waitpoints with tether's own waits, and go round again when woken. So runs of
it are created, queued, claimed, parked, woken, cancelled and inspected by the
same machinery as any other run; nothing in the engine knows it is remote.

What the loop writes goes through the run's `Workflow` context, so every write
is fenced by the drive's owner generation: the answer of an invocation whose
drive was superseded (its claim lapsed and another process took the run) is
refused by the store (`StaleOwnerError`) and never recorded.

Which steps can repeat. A tenant sends each step's result the moment the step
completes, before the body goes on, and the orchestrator records it before
reading the next line. If the tenant dies mid-invocation, the next invocation
carries every step recorded so far; what runs again is only (1) the step that
was running when it died, and (2) a step that had completed but whose line had
not yet been recorded here (in flight on the network, or the orchestrator died
between reading and recording it). Steps should be idempotent, as for any
tether step that a crash can interrupt.

Each line is recorded under the tenant's own key (`_recorder`): a line
delivered twice is recorded once. Attempts and failures of steps are recorded
too, and go back in the journal, so retry limits and the interrupted-rerun
limit hold across invocations and a step that failed for good is not run again.

Each invocation sends the run's recorded workflow version (the tenant decides
whether its code can resume it: its `compatible=`) and its durable state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from .._control import HandBack, Suspend
from .._durations import due_after
from .._waits import MISSING
from .._workflow import Workflow
from ..clock import Clock
from ..definition import DEF_ATTR, WorkflowDef
from ..errors import (
    ChildRunError,
    InvalidArgumentError,
    RunCancelledError,
    WorkflowNotFoundError,
)
from ..serde import load_json
from ..store import Fence, Store
from ._call import Reply, call, encode, shown_url
from ._errors import (
    RemoteDeadlineError,
    RemoteError,
    RemoteInvocationLimitError,
    RemoteUnavailableError,
    RemoteWorkflowError,
)
from ._invocations import INVOKED, invocations_so_far
from ._recorder import ACCEPTS, Recorder, journal_of
from ._wire import PROTOCOL_VERSION, Invocation, Line, RunMeta, TenantMeta, Waitpoint


class App(Protocol):
    """What the orchestrator needs of the App it registers on: a port, so that this
    package depends on the App's shape and not on `tether.app` (which imports it for
    `App.remote_workflow`). `tether.App` fits it."""

    store: Store
    clock: Clock

    def register(self, workflow: Callable[..., Awaitable[Any]]) -> None: ...

    def get_workflow(self, name: str) -> WorkflowDef: ...

    @property
    def workflows(self) -> dict[str, WorkflowDef]: ...

    async def acancel(
        self, workflow_id: str, reason: str | None = None, *, compensate: bool = False
    ) -> list[str]: ...


__all__ = ["RemoteSpec", "remote_workflow"]

log = logging.getLogger("tether.remote")

TENANT = "remote.tenant"  # the marker step that carries the tenant's compensation
_AGAIN: Any = object()


@dataclass(frozen=True)
class RemoteSpec:
    """Where a remote workflow runs and how it is invoked."""

    name: str
    url: str
    secret: str
    version: str | None = None
    deadline: float = 30.0  # seconds each invocation may take
    max_invocations: int = 100
    retry_delay: float = 0.5  # after an unanswered invocation; doubles, up to 30 s
    project: str | None = None
    organisation: str | None = None
    transport: httpx.AsyncBaseTransport | None = None
    # earlier versions whose runs this one resumes (the tenant must serve them too)
    compatible: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.compatible, str) or not all(isinstance(v, str) for v in self.compatible):
            raise InvalidArgumentError(
                f"compatible must be a list of version strings, got {self.compatible!r}"
            )
        object.__setattr__(self, "compatible", tuple(self.compatible))
        _check_url(self.url)
        if not isinstance(self.secret, str) or not self.secret:
            raise InvalidArgumentError("secret must be a non-empty str (the tenant's secret)")
        for what, value in (("deadline", self.deadline), ("retry_delay", self.retry_delay)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgumentError(f"{what} must be seconds > 0, got {value!r}")
        bad_cap = isinstance(self.max_invocations, bool) or not isinstance(
            self.max_invocations, int
        )
        if bad_cap or self.max_invocations < 1:
            raise InvalidArgumentError(
                f"max_invocations must be an integer >= 1, got {self.max_invocations!r}"
            )


def _check_url(url: object) -> None:
    """`InvalidArgumentError` unless `url` is an http(s) URL httpx can send to. A port
    out of range or a broken IPv6 host was accepted here and failed each run with
    httpx's bare ``InvalidURL: Invalid port: ':1'``, naming neither the url nor the
    fix; ``HTTPS://`` (a scheme is case-insensitive) was refused; and the message
    quoted the url with the password in it."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"url must be an http(s) URL string, got {url!r}")
    shown = shown_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"url {shown!r} is not a valid URL ({exc}): give the URL the tenant's "
            "tether.remote.handler is served at, e.g. 'https://tenant.example/'"
        ) from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidArgumentError(
            f"url {shown!r} has port {parsed.port}, and a port is 1 to 65535: give the "
            "port the tenant's tether.remote.handler is served on"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgumentError(
            f"url must be an http(s) URL with a host, got {shown!r}: give the URL the "
            "tenant's tether.remote.handler is served at, e.g. 'https://tenant.example/'"
        )


def remote_workflow(app: App, spec: RemoteSpec, timeout: float | None = None) -> Any:
    """Register `spec` on `app` as a workflow named `spec.name`; the workflow function
    (pass it to `app.run`, `app.start`, `app.submit` like any other)."""

    async def remote(wf: Workflow, input: Any = None) -> Any:
        return await _Drive(app, spec, wf, input).run()

    remote.__name__ = remote.__qualname__ = spec.name.replace("-", "_")
    defn = WorkflowDef.make(
        remote, name=spec.name, version=spec.version, compatible=spec.compatible, timeout=timeout
    )
    setattr(remote, DEF_ATTR, defn)
    app.register(remote)
    return remote


class _Drive:
    """One drive of a remote run: invocations until it ends or parks."""

    def __init__(self, app: App, spec: RemoteSpec, wf: Workflow, input: Any) -> None:
        self.app, self.spec, self.wf, self.input = app, spec, wf, input
        self.failures = 0
        self.recorder: Recorder | None = None  # of the invocation under way
        self.cut = False  # an invocation of this drive was cut at its deadline
        self.invoked: int | None = None  # the run's invocations so far, once read

    async def run(self) -> Any:
        # a marker step; when a run cancelled with compensate=True is replayed, it
        # carries the compensation that asks the tenant to undo its steps (a failed
        # run needs none here: the tenant compensated before it answered)
        compensating = self.wf.compensating
        undo = self._compensate_on_tenant if compensating else None
        await self.wf.step(TENANT, self._where, compensate=undo)
        if compensating:  # the replay learned that compensation: stop here
            raise RunCancelledError(self.wf.workflow_id)
        try:
            result = await self._invoke_until_done()
        except RunCancelledError:
            self._undoable()  # cancelled mid-invocation: compensated now, if asked
            raise
        self._undoable()  # a cancel landing as the run completes is compensated too
        return result

    def _undoable(self) -> None:
        """Register the tenant's compensation on `TENANT` once the run is cancelled
        while its drive runs (a cancel mid-invocation, or landing as it completes): a
        cancel with compensate=True then asks the tenant to undo its steps, as the
        replay of a parked run does. Never on a failure: the tenant compensated before
        it answered that (the engine runs a cancelled run's undos only if asked)."""
        self.wf.undo_recorded(TENANT, self._compensate_on_tenant)

    async def _invoke_until_done(self) -> Any:
        """Invocations until the run ends or parks: its result, or it raises."""
        last: RemoteUnavailableError | None = None
        while True:
            if self.wf.draining:  # shutting down: no new invocation, hand the run back
                raise HandBack()
            n = await self._invocations() + 1
            if n > self.spec.max_invocations:
                raise self._capped(last)
            inv = await self._invocation(n)
            body = encode(inv)  # one a tenant would refuse as too large fails the run here
            await self.wf.log_event_now(INVOKED, f"invocation {n}", {"invocation": n})
            self.invoked = n
            try:
                reply = await call(
                    self.spec.url, self.spec.secret, inv, self._record, self.spec.transport, body
                )
            except RemoteUnavailableError as exc:
                last = exc
                self.cut = self.cut or isinstance(exc, RemoteDeadlineError)
                await self._back_off(exc)
                continue
            self.failures = 0
            result = await self._settle(reply)
            if result is not _AGAIN:
                return result

    def _capped(self, last: RemoteUnavailableError | None) -> RemoteInvocationLimitError:
        """The run's cap reached; when the tenant ran out of time, the fix is more time:
        a step that outlasts the deadline is cut short at every invocation."""
        fix = None
        if isinstance(last, RemoteDeadlineError):
            fix = (
                f"the tenant did not answer within deadline={self.spec.deadline:g} s: raise "
                "deadline= on app.remote_workflow if its steps take longer (a step still "
                "running at the deadline is cut short at every invocation), or "
                "max_invocations= if the workflow needs more invocations"
            )
        last_text = None if last is None else str(last)
        return RemoteInvocationLimitError(
            self.wf.workflow_id, self.spec.max_invocations, last_text, fix
        )

    def _where(self) -> str:
        return shown_url(self.spec.url)  # recorded: never a password in it

    async def _compensate_on_tenant(self) -> None:
        """The compensation of `TENANT`: one invocation in ``compensate`` mode, in
        which the tenant runs the compensations of the steps its journal holds.
        Its lines are not recorded here (a compensation is one step), so if this is
        retried the tenant runs its compensations again: make them idempotent."""
        ran: list[str] = []
        answer = (await self._call_to_compensate(ran)).answer
        log.info("tenant compensated run %s: %s (%s)", self.wf.workflow_id, answer.status, ran)
        if answer.status == "compensation_failed":
            raise RemoteError(
                f"a compensation failed on the tenant ({', '.join(ran) or 'none ran'})"
            )
        if answer.status not in ("compensated", "cancelled"):
            # its error says why (an input its function no longer takes, say): it was left out
            error = answer.error or {}
            why = f": {error.get('type', 'Exception')}: {error.get('message', '')}" if error else ""
            raise RemoteError(f"the tenant answered {answer.status!r} to compensate{why}")

    async def _call_to_compensate(self, ran: list[str]) -> Reply:
        """The tenant's answer to the compensate invocation, the keys of the steps it
        streamed added to `ran`. Unanswered (the tenant down, a 5xx, its deadline), it
        is tried again after `retry_delay`, doubling, up to `max_invocations` tries, as
        the run's own invocations are (unless this process is shutting down): it was
        tried once, so a tenant down for a moment left the run compensation_failed and
        the steps the tenant ran never undone."""

        async def seen(line: Line, values: Mapping[str, Any]) -> None:
            if line.type == "step" and line.step is not None:
                ran.append(line.step.key)

        n, tries = await self._invocations(), 0
        while True:
            tries += 1
            inv = (await self._invocation(n + tries)).model_copy(update={"mode": "compensate"})
            try:
                return await call(self.spec.url, self.spec.secret, inv, seen, self.spec.transport)
            except RemoteUnavailableError as exc:
                if self.wf.draining or tries >= self.spec.max_invocations:
                    raise
                await self._back_off(exc)

    async def _invocations(self) -> int:
        """The run's invocations so far: read once a drive, from the end of its events
        (it read all of them at each invocation), then counted here."""
        if self.invoked is None:
            self.invoked = await invocations_so_far(self.app.store, self.wf.workflow_id)
        return self.invoked

    async def _back_off(self, exc: RemoteError) -> None:
        await self.wf.log_event_now("remote.unanswered", str(exc))
        delay = min(self.spec.retry_delay * 2**self.failures, 30.0)
        asked = getattr(exc, "retry_after", None)  # the tenant's (or a proxy's) Retry-After
        delay = delay if asked is None else max(delay, asked)
        self.failures += 1
        log.warning("%s; trying again in %.1fs", exc, delay)
        await self.app.clock.sleep(delay)

    async def _invocation(self, n: int) -> Invocation:
        store, wid = self.app.store, self.wf.workflow_id
        run = await store.get_run(wid)
        assert run is not None  # the drive holds it
        steps = await store.load_steps(wid)
        fence = Fence(wid, self.wf.generation)
        self.recorder = Recorder(
            store, self.app.clock, fence, steps, self.wf.notify, self.wf.keep_state
        )
        return Invocation(
            protocol=PROTOCOL_VERSION,
            run_id=wid,
            workflow=self.spec.name,
            version=run.workflow_version,  # the run's: the tenant may serve it as compatible
            invocation=n,
            input=run.input,
            journal=journal_of(steps, await store.list_waits(wid)),
            deadline=time.time() + self.spec.deadline,
            # the state the run began with: the tenant replays the updates from there, so
            # its code sees on each invocation what it saw the first time
            state=run.state if run.initial_state is None else run.initial_state,
            accepts=list(ACCEPTS),
            tenant=TenantMeta(
                tenant=run.tenant, project=self.spec.project, organisation=self.spec.organisation
            ),
            run=RunMeta(attempt=run.attempt, tags=list(run.tags), queue=run.queue,
                        parent_id=run.parent_id, created_at=run.created_at,
                        generation=self.wf.generation or 0, step_rule=run.step_rule),
        )  # fmt: skip

    # -- what comes back ------------------------------------------------------------------

    async def _record(self, line: Line, values: Mapping[str, Any]) -> None:
        """Record one streamed line, through the fenced context, before reading on;
        `values` are its JSON texts as `call` parsed them (to check them)."""
        wf, recorder = self.wf, self.recorder
        assert recorder is not None  # made with the invocation
        if line.type == "step" and line.step is not None:
            # the tenant ran it: recorded even while this process drains, or a graceful
            # exit would lose a finished step and the next drive would run it again
            await recorder.completed(line.step)
        elif line.type == "attempt" and line.attempt is not None:
            await recorder.attempt(line.attempt)
        elif line.type == "wait" and line.wait is not None:
            await recorder.token(line.wait)
        elif line.type == "event" and line.event is not None:
            await wf.log_event_now(
                str(line.event.get("type")), line.event.get("message"), values.get("event.detail")
            )
        elif line.type == "state" and line.state is not None:
            await wf.write_state_now(values["state"])
        elif line.type == "start_child" and line.child is not None:
            child = line.child
            fn = self._child_workflow(str(child.workflow)).fn
            given = MISSING if child.input is None else load_json(child.input)
            await wf.start_child(fn, given, workflow_id=child.name)

    def _child_workflow(self, name: str) -> WorkflowDef:
        """The workflow a tenant's body started as a child, by its name here; if none is
        registered, an error that says how to register one (a child the tenant serves
        is registered as a remote workflow: its ``@tenant.workflow`` is not enough)."""
        try:
            return self.app.get_workflow(name)
        except WorkflowNotFoundError:
            known = ", ".join(sorted(self.app.workflows)) or "none"
            raise WorkflowNotFoundError(
                f"remote workflow {self.spec.name!r} (run {self.wf.workflow_id!r}) started "
                f"a child workflow {name!r}, and none is registered under that name on this "
                f"orchestrator (registered: {known}): register it here with "
                f"app.remote_workflow({name!r}, url=..., secret=...) if a tenant serves it, "
                "or with @app.workflow if its code runs in the orchestrator's process"
            ) from None

    async def _settle(self, reply: Reply) -> Any:
        """The run's result, or `_AGAIN` once every waitpoint resolved; raises for a
        failure, and `Suspend` (from the waits) to park."""
        wid, answer = self.wf.workflow_id, reply.answer
        if answer.status == "completed":
            return reply.output  # parsed once, by the check of its line
        if answer.status == "waiting":  # on a waitpoint at least (`parse_line`)
            pending: Suspend | None = None
            for wp in answer.waitpoints:  # register every one, then park on those pending
                try:
                    await self._park(wp)
                except Suspend as suspend:
                    pending = pending or suspend
            if pending is not None:
                raise pending
            return _AGAIN
        if answer.status == "cancelled":
            await self.app.acancel(wid)
            raise RunCancelledError(wid)
        if answer.status in ("compensated", "compensation_failed"):
            await self._compensated(answer.status)
        hint = None
        if self.cut and (answer.error or {}).get("type") == "StepFailedError":
            # its attempts were "used up by an earlier process": here, by the deadline
            hint = (
                f"invocations of this run were cut at their deadline={self.spec.deadline:g} s, "
                "and a step still running then is interrupted: raise deadline= on "
                "app.remote_workflow if its steps take longer"
            )
        raise RemoteWorkflowError(wid, answer.error, hint)

    async def _compensated(self, status: str) -> str:
        """The tenant already ran the compensations (recorded as its steps); tell the
        engine so that the run ends compensated, or compensation_failed."""

        async def outcome() -> str:
            return status

        def undone() -> None:
            if status != "compensated":
                raise RemoteError("a compensation failed on the tenant (see its steps)")

        recorded: str = await self.wf.step("remote.compensations", outcome, compensate=undone)
        return recorded

    async def _park(self, wp: Waitpoint) -> None:
        """Wait on `wp` under the tenant's key: returns once it is resolved (or timed
        out); suspends the run (tether's `Suspend`) while it is pending."""
        wf, app = self.wf, self.app
        timeout = wp.timeout  # a duration: the tenant's clock need not be ours
        if timeout is None and wp.due_at is not None:  # a tenant of an earlier release
            timeout = max(0.0, (wp.due_at - app.clock.now()).total_seconds())
        if wp.kind == "signal":
            await wf.wait_for_signal(str(wp.name), key=wp.key, timeout=timeout, default=None)
        elif wp.kind == "event":
            match = None if wp.match is None else load_json(wp.match)
            await wf.wait_for_event(
                str(wp.name), match=match, key=wp.key, timeout=timeout, default=None
            )
        elif wp.kind == "token":
            await wf.wait_for_token(str(wp.name), timeout=timeout, default=None)
        elif wp.kind == "sleep":
            assert timeout is not None
            await wf.sleep_until(due_after(app.clock.now(), timeout), key=wp.key)
        else:
            fn = self._child_workflow(str(wp.workflow)).fn
            given = MISSING if wp.input is None else load_json(wp.input)
            with contextlib.suppress(ChildRunError):  # the tenant reads it from the journal
                await wf.child(fn, given, workflow_id=wp.name)
