"""Every public tether exception.

The tree::

    TetherError
    ├── InvalidArgumentError (also ValueError)  bad input to a public call
    │   ├── IdempotencyConflictError            a run's idempotency key reused with other input
    │   └── TokenCompletedError                 a token completed again (HTTP: 409)
    ├── NotSerializableError (also TypeError)   a value JSON cannot hold
    ├── StoreError                              the database failed or is unusable
    │   ├── StoreUnavailableError               cannot reach / open the database
    │   ├── IncompatibleStoreError              foreign file or newer schema
    │   └── StaleOwnerError                     a fenced write from a superseded owner
    ├── RunNotFoundError (also LookupError)     no run with that workflow id
    ├── WorkflowNotFoundError (also LookupError) no workflow registered under a name
    ├── LeaseConflictError                      a lease is held by someone else
    ├── MutexTimeoutError (also TimeoutError)   a mutex was not acquired in time
    ├── StepFailedError                         a step exhausted its attempts
    ├── StepTimeoutError (also TimeoutError)    a step attempt ran past its timeout
    ├── ForEachError                            a for_each item failed (in fanout, with its summary)
    ├── WaitTimeout (also TimeoutError)         a wait reached its timeout (raised in the workflow)
    ├── TokenNotFoundError (also LookupError)   no completion token with that id
    ├── RunFinishedError                        the run is already terminal (cancel, signal, ...)
    ├── RunAlreadyRunningError                  another live process owns the run
    ├── RunFailedError                          a run failed earlier (its own error type is gone)
    ├── WorkflowVersionError                    resuming under an incompatible workflow version
    ├── WorkflowTimeoutError (also TimeoutError) the run executed longer than its timeout
    ├── ChildRunError                           a child run ended without a result
    ├── IdempotencyInProgressError              a command with that key is still running
    ├── WebhookSignatureError                   a signed request that is not accepted (`verify`)
    └── BatchesOutError                         a cancel would leave provider batches running

Engine control flow is not an error and derives from BaseException, so a
user's ``except Exception`` cannot swallow it:

    asyncio.CancelledError
    └── RunCancelledError                       the run was cancelled; seen at a step boundary

Errors carry the facts a caller needs as attributes, and their message says
what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

import asyncio
from datetime import datetime

__all__ = [
    "BatchesOutError",
    "ChildRunError",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "IncompatibleStoreError",
    "InvalidArgumentError",
    "LeaseConflictError",
    "MutexTimeoutError",
    "NewerRunError",
    "NotSerializableError",
    "RunAlreadyRunningError",
    "RunCancelledError",
    "RunFailedError",
    "RunFinishedError",
    "RunNotFoundError",
    "StaleOwnerError",
    "StepFailedError",
    "StepTimeoutError",
    "StoreError",
    "StoreUnavailableError",
    "TetherError",
    "TokenCompletedError",
    "TokenNotFoundError",
    "WaitPayloadError",
    "WaitTimeout",
    "WebhookSignatureError",
    "WorkflowIdConflictError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
    "WorkflowVersionError",
]


class TetherError(Exception):
    """Root of every error tether raises on purpose."""


class InvalidArgumentError(TetherError, ValueError):
    """A public call got an argument it cannot use."""


class WorkflowIdConflictError(InvalidArgumentError):
    """A workflow id given again, without its idempotency key, for another run than the
    one it names: another workflow, another input, or (submitted) another queue. The
    HTTP API answers it 409, a conflict with what is recorded, not a malformed request.
    `workflow_id` is the id; `differs` says what differs."""

    def __init__(self, workflow_id: str, differs: str, message: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.differs = differs


class IdempotencyConflictError(InvalidArgumentError):
    """An idempotency key was given again with a different request: for a run,
    another input, workflow id, workflow, queue, concurrency key or number of
    attempts (`differs` says which); for another kernel command (`command`), any
    other field."""

    def __init__(
        self, key: str, workflow_id: str, differs: str = "input", *, command: str | None = None
    ) -> None:
        self.key = key
        self.workflow_id = workflow_id
        self.differs = differs
        if command is not None:
            super().__init__(
                f"idempotency key {key!r} was already used for a different {command} "
                "command; the same key must come with the same request (it names one "
                "request): use a new key for a new request, or resend the original one"
            )
            return
        fix = {
            "input": "resend the original input",
            "workflow id": f"ask for run {workflow_id!r}",
            "workflow": "start the workflow the key was first used for",
        }.get(differs, "resend the original request")
        super().__init__(
            f"idempotency key {key!r} already created run {workflow_id!r} with a different "
            f"{differs}; the same key must come with the same request (it names one "
            f"request): use a new key for a new request, or {fix}"
        )


class NotSerializableError(TetherError, TypeError):
    """A value that must be stored as JSON cannot be. `type_name` names the offending
    type; `offending_type` is the type itself, None where the error was rebuilt from its
    record (a replay, another process), which keeps the name but not the type."""

    offending_type: type | None = None
    type_name: str = ""

    def __init__(
        self,
        what: str,
        offending_type: type,
        path: str = "",
        *,
        problem: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.offending_type = offending_type
        self.path = path
        where = f" at {path}" if path else ""
        type_name = f"{offending_type.__module__}.{offending_type.__qualname__}"
        self.type_name = type_name
        if problem is None:
            problem = f"value of type {type_name}{where} is not JSON-serialisable"
        else:
            problem = f"{type_name}{where} {problem}"
        if fix is None:
            fix = (
                "Return JSON data (dict, list, str, int, float, bool, None), "
                "a pydantic model, or a dataclass instead."
            )
        super().__init__(f"{what} cannot be stored as JSON: {problem}. {fix}")


class StoreError(TetherError):
    """The store failed or cannot be used."""


class StoreUnavailableError(StoreError):
    """The database cannot be opened or reached. `lasting`: the server answered and
    refused (no such database or role, a wrong password), which waiting will not mend."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


class IncompatibleStoreError(StoreError):
    """The database is not a tether database, or was written by a newer tether."""


class StaleOwnerError(StoreError):
    """A write came from an owner whose generation was superseded; nothing was written."""

    def __init__(self, workflow_id: str, generation: int | None) -> None:
        self.workflow_id = workflow_id
        self.generation = generation
        super().__init__(
            f"run {workflow_id!r}: this process no longer owns the run (generation "
            f"{generation} was superseded by a newer owner); its write was refused"
        )


class RunNotFoundError(TetherError, LookupError):
    """No run exists with the given workflow id."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"no run with workflow id {workflow_id!r}; `tether runs list` shows the known runs"
        )


class WorkflowNotFoundError(TetherError, LookupError):
    """No workflow is registered under the given name."""


class LeaseConflictError(TetherError):
    """The lease is held by another holder and has not expired."""

    def __init__(
        self,
        key: str,
        holder: str,
        current_holder: str,
        expires_at: datetime | None,
        *,
        releasing: bool = False,
    ) -> None:
        self.key = key
        self.holder = holder
        self.current_holder = current_holder
        self.expires_at = expires_at
        until = f" until {expires_at.isoformat()}" if expires_at else ""
        if releasing:  # "cannot take it" read oddly for a release
            said = (
                f"{holder!r} cannot release it: it is no longer theirs (it lapsed and "
                f"{current_holder!r} took it)"
            )
        else:
            said = f"{holder!r} cannot take it before it expires or is released"
        super().__init__(f"lease {key!r} is held by {current_holder!r}{until}; {said}")


class MutexTimeoutError(TetherError, TimeoutError):
    """A mutex could not be acquired within its timeout."""

    def __init__(
        self,
        key: str,
        timeout: float,
        holder: str | None,
        *,
        run_id: str | None = None,
        parked: bool = False,
        hint: str | None = None,
    ) -> None:
        self.key = key
        self.timeout = timeout
        self.holder = holder
        self.run_id = run_id  # the run holding it, if a run does
        self.parked = parked  # that run is parked inside its block and keeps it
        by = f" (held by {holder!r}{f' of run {run_id!r}' if run_id else ''})" if holder else ""
        if parked:
            hint = (
                "the run parked inside its block (waiting for a signal, an event or a "
                "timer) and keeps the mutex until it resumes and leaves the block or ends; "
                "resolve its wait or cancel it, or raise `timeout=`"
            )
        elif hint is None:  # (given: what else the waiter knows, a lock order say)
            hint = "raise `timeout=` or check for a holder that never releases"
        super().__init__(f"mutex {key!r} was not acquired within {timeout:g}s{by}; {hint}")


class StepFailedError(TetherError):
    """A step failed and will not be retried (attempts exhausted or not retryable)."""

    def __init__(self, step: str, attempts: int, error_type: str, message: str) -> None:
        self.step = step
        self.attempts = attempts
        self.error_type = error_type
        self.error_message = message
        super().__init__(
            f"step {step!r} failed after {attempts} attempt(s): {error_type}: {message}"
        )


class StepTimeoutError(TetherError, TimeoutError):
    """A step attempt ran longer than the step's `timeout`; retried like any failure."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(
            f"step {name!r} ran past its timeout of {timeout:g}s; the attempt was abandoned "
            "(raise the step's timeout=, or let its RetryPolicy try again)"
        )


class WaitTimeout(TetherError, TimeoutError):
    """A wait in a workflow reached its timeout before it was resolved."""

    def __init__(self, key: str, kind: str) -> None:
        self.key = key
        self.kind = kind
        super().__init__(f"{kind} wait {key!r} timed out; pass default= to get a value instead")


class WaitPayloadError(TetherError, TypeError):
    """A wait declared the type of its answer (``result_type=``) and was answered with a
    payload that does not validate as it. The payload stays recorded as sent, and a
    replay raises this again at the same wait: catch it to ask again (the next wait of
    that name is a new wait) or let it fail the run."""

    def __init__(self, workflow_id: str, wait_key: str, type_name: str, problem: str) -> None:
        self.workflow_id = workflow_id
        self.wait_key = wait_key
        self.type_name = type_name
        super().__init__(
            f"wait {wait_key!r} of run {workflow_id!r} was answered with a payload that does "
            f"not validate as {type_name} ({problem}); answer it with one that does, or "
            "catch WaitPayloadError in the workflow to wait again"
        )


class TokenNotFoundError(TetherError, LookupError):
    """No completion token exists with the given id."""

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(
            f"no completion token {token_id!r}; tokens come from `await wf.create_token()`"
        )


_ENDED = {"resolved": "resolved: completed", "timed_out": "timed out", "cancelled": "cancelled"}


class TokenCompletedError(InvalidArgumentError):
    """A token completed again. The call is sound but conflicts with what is recorded
    (the server answers 409, not 422), so it says when the token was completed and
    with what: a caller retrying after a lost answer can tell its own completion from
    another's. An `InvalidArgumentError` still, as it was before it had a class."""

    def __init__(
        self,
        token_id: str,
        workflow_id: str,
        status: str,
        completed_at: datetime | None,
        payload: str | None,
    ) -> None:
        self.token_id = token_id
        self.workflow_id = workflow_id
        self.status = status  # resolved, timed_out or cancelled
        self.completed_at = completed_at
        self.payload = payload  # JSON text, or None
        when = "" if completed_at is None else f" at {completed_at.isoformat()}"
        given = ""
        if status == "resolved":
            text = payload or "null"
            given = f" with payload {text if len(text) <= 200 else text[:200] + '...'}"
        super().__init__(
            f"token {token_id!r} of run {workflow_id!r} was already "
            f"{_ENDED.get(status, status)}{when}{given}; a token completes once: to answer "
            "the run again, have it make a new token with wf.create_token()"
        )


class RunFinishedError(TetherError):
    """The run already reached a terminal status, so it cannot take this action."""

    def __init__(self, workflow_id: str, status: str, action: str, note: str = "") -> None:
        self.workflow_id = workflow_id
        self.status = status
        more = f"; {note}" if note else ""
        super().__init__(f"cannot {action} run {workflow_id!r}: it already ended ({status}){more}")


class RunAlreadyRunningError(TetherError):
    """Another process that is alive (its claim on the run has not lapsed) drives the run."""

    def __init__(self, workflow_id: str, owner: str | None, until: datetime | None) -> None:
        self.workflow_id = workflow_id
        self.owner = owner
        self.until = until
        lapse = (
            "" if until is None else f" (its claim lapses at {until.isoformat()} unless renewed)"
        )
        super().__init__(
            f"run {workflow_id!r} is being driven by {owner!r}{lapse}; wait for its result "
            "(app.result), or stop that process: a dead owner's run is taken over once its "
            "claim lapses"
        )


class RunFailedError(TetherError):
    """The run failed when it ran; asked again, it answers with that failure.

    Raised in place of the original exception only when its class cannot be
    found again (it was defined in a script, say); `error_type` names it.
    """

    def __init__(self, workflow_id: str, error_type: str, message: str) -> None:
        self.workflow_id = workflow_id
        self.error_type = error_type
        self.message = message
        super().__init__(
            f"run {workflow_id!r} failed: {error_type}: {message} (rerun it from a step with "
            "app.rerun_from, or start a new run under another id)"
        )


class WorkflowVersionError(TetherError):
    """A run started under one version cannot resume under an incompatible one."""

    def __init__(self, workflow_id: str, recorded: str | None, current: str | None) -> None:
        self.workflow_id = workflow_id
        self.recorded = recorded
        self.current = current
        super().__init__(
            f"run {workflow_id!r} started under workflow version {recorded!r}; the registered "
            f"version is {current!r}. Resume it with the old code, or declare the new version "
            f"compatible: @app.workflow(version={current!r}, compatible=[{recorded!r}])"
        )


class NewerRunError(WorkflowVersionError):
    """The run was started by a newer tether, which names its steps by a rule this one
    does not know: driven here, it would record them under other names and run them
    again. Left to a process of that release (a worker hands its job back)."""

    def __init__(self, workflow_id: str, rule: int, known: int) -> None:
        self.workflow_id = workflow_id
        self.recorded = self.current = None
        self.rule, self.known = rule, known
        TetherError.__init__(
            self,
            f"run {workflow_id!r} was started by a newer tether (step rule {rule}; this one "
            f"knows up to {known}); drive it with that release: upgrade this process",
        )


class WorkflowTimeoutError(TetherError, TimeoutError):
    """The run spent longer executing than its workflow's `timeout=` (parked time excluded)."""

    def __init__(self, workflow_id: str, timeout: float) -> None:
        self.workflow_id = workflow_id
        self.timeout = timeout
        super().__init__(f"run {workflow_id!r} executed for more than its timeout of {timeout:g}s")


class ChildRunError(TetherError):
    """A child run ended failed or cancelled; its error is attached."""

    def __init__(self, child_id: str, status: str, error: dict[str, object] | None) -> None:
        self.child_id = child_id
        self.status = status
        self.error = error
        what = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"child run {child_id!r} ended {status}{what}")


class IdempotencyInProgressError(TetherError):
    """A command with the same idempotency key is still being executed."""

    def __init__(self, command: str, key: str) -> None:
        self.command = command
        self.key = key
        super().__init__(
            f"command {command!r} with idempotency key {key!r} is still in flight; "
            "retry later to get its result"
        )


class WebhookSignatureError(TetherError):
    """A signed request (a tether webhook delivery) that is not accepted.

    `code` says why, for a receiver that answers it: ``signature_missing``,
    ``bad_timestamp``, ``bad_signature`` or ``stale_timestamp``. Answer 401 for
    each, and never say which secret came close.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class BatchesOutError(TetherError):
    """A run to cancel has provider batches out that this App cannot reach (no provider
    of that name, or a batch stage of a pipeline it does not register). Cancelled
    here, they would run on at the provider, billed, with nothing left to stop them."""

    def __init__(self, workflow_id: str, batches: list[str]) -> None:
        self.workflow_id = workflow_id
        self.batches = batches
        super().__init__(
            f"run {workflow_id!r} has {', '.join(batches)} out, which this App cannot "
            "cancel at the provider: cancelled here, they would run on, billed. Cancel it "
            "from the App whose providers submitted them (CLI: --app FILE.py:app), or pass "
            "abandon_batches=True (CLI: --abandon-batches) to cancel the run and leave them"
        )


class RunCancelledError(asyncio.CancelledError):
    """The run was cancelled; raised at the next step boundary of code still running it."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"run {workflow_id!r} was cancelled")


def explain_validation(exc: ValidationError) -> str:
    """Pydantic's validation errors in one line: each field, what is wrong, what it got
    (without pydantic's link to its site, which helps nobody reading a tether error)."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']} (got {e['input']!r})"
        for e in exc.errors(include_url=False)[:3]
    ]
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more
