"""Every status a run, step, job or wait can have, and which verb moves it where.

The table is data: the store's status sets (terminal, closed, open ...) are
derived from it, and `tests/store/test_lifecycle.py` walks it against both
backends (each allowed move works; a move the table lacks is refused). A
move from ``None`` creates the row.

`END_REASONS` says, for each move that ends a run, which `EndReason` it
records by the status it lands in: the status is what became of the run, the
reason why it ended (a cancelled run whose compensations ran is compensated,
and was cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ._records import EndReason, JobStatus, RunStatus, StepStatus, WaitStatus

__all__ = [
    "CLOSED",
    "END_REASONS",
    "JOB_RUN",
    "MOVES",
    "OPEN",
    "RERUNNABLE",
    "TERMINAL",
    "Move",
    "end_reason",
    "moves",
    "sql_set",
]

R, J, S, W, E = RunStatus, JobStatus, StepStatus, WaitStatus, EndReason


@dataclass(frozen=True)
class Move:
    """`verb` may move a `kind` row from each of `src` to each of `dst`."""

    kind: str  # "run", "step", "job", "wait"
    verb: str
    src: frozenset[str | None]
    dst: frozenset[str]


def _m(kind: str, verb: str, src: object, dst: object) -> Move:
    def norm(x: object) -> frozenset[str | None]:
        items = x if isinstance(x, (tuple, list, set, frozenset)) else (x,)
        return frozenset(None if i is None else str(i) for i in items)

    return Move(kind, verb, norm(src), frozenset(str(d) for d in norm(dst) if d is not None))


_FINISHED = (R.COMPLETED, R.FAILED)
_COMPENSATION = (R.COMPENSATED, R.COMPENSATION_FAILED)
_ENDED_BY_CANCEL = (R.CANCELLED, R.COMPENSATED, R.COMPENSATION_FAILED)
_LIVE = (R.PENDING, R.RUNNING, R.WAITING)

MOVES: tuple[Move, ...] = (
    _m("run", "create_run", None, R.PENDING),
    _m("run", "submit_run", None, R.PENDING),
    # never a run that ended: a driver that read it live a moment ago is refused
    _m("run", "claim_run", _LIVE, R.RUNNING),
    _m("run", "claim_run(compensating)", R.CANCELLED, R.CANCELLED),
    # a worker's claim of a job claims its run too, for the worker's host (`RunClaim`)
    _m("run", "claim_jobs", (R.PENDING, R.RUNNING), R.RUNNING),
    _m("run", "release_run", R.RUNNING, R.PENDING),
    _m("run", "park_run", R.RUNNING, R.WAITING),
    _m("run", "wake", R.WAITING, R.PENDING),  # send_event, send_signal, complete_token, ...
    # a failed run with compensations ends compensated (or compensation_failed)
    _m("run", "finish_run", (*_LIVE, *_FINISHED), (*_FINISHED, *_COMPENSATION)),
    # a cancelled run with nothing to compensate stays cancelled
    _m("run", "finish_run(compensating)", R.CANCELLED, (R.CANCELLED, *_COMPENSATION)),
    _m("run", "cancel_run", _LIVE, R.CANCELLED),
    # a run whose job used up its attempts on workers that died ends failed
    _m("run", "reap_jobs", (R.PENDING, R.RUNNING), R.FAILED),
    # a run that is not executing: not running, nor cancelled with compensation to come
    _m("run", "rerun_from", (R.PENDING, R.WAITING, *_FINISHED, *_ENDED_BY_CANCEL[1:]), R.PENDING),
    # a compensation_failed run tries its unfinished compensations again: one that failed
    # replays its failure first, one cancelled is compensated as a cancel leaves it
    _m("run", "retry_compensations", R.COMPENSATION_FAILED, (R.PENDING, R.CANCELLED)),
    _m("step", "start_step", (None, S.RUNNING, S.FAILED, S.COMPLETED), S.RUNNING),
    _m("step", "complete_step", S.RUNNING, S.COMPLETED),
    _m("step", "fail_step", S.RUNNING, S.FAILED),
    _m("step", "save_value", None, S.COMPLETED),
    _m("job", "submit_run", None, J.QUEUED),
    _m("job", "claim_jobs", J.QUEUED, J.CLAIMED),
    _m("job", "finish_job", J.CLAIMED, (J.DONE, J.FAILED, J.QUEUED)),
    # a run that ends by its own function closes its claimed job in the same transaction
    _m("job", "finish_run", J.CLAIMED, J.DONE),
    _m("job", "release_job", J.CLAIMED, J.QUEUED),
    _m("job", "retry_job", J.CLAIMED, J.QUEUED),
    _m("job", "reap_jobs", J.CLAIMED, (J.QUEUED, J.FAILED)),
    _m("job", "cancel_run", J.QUEUED, J.CANCELLED),
    # a queued run cancelled with compensate=True gets a new job, for a worker to drive
    # its compensation (none while a worker holds its job: that worker compensates it)
    _m("job", "cancel_run(compensating)", (None, J.QUEUED), (J.QUEUED, J.CANCELLED)),
    _m("wait", "register_wait", None, (W.PENDING, W.RESOLVED)),
    _m("wait", "resolve", W.PENDING, W.RESOLVED),  # event, signal, token, timer, child
    _m("wait", "fire_due", W.PENDING, (W.RESOLVED, W.TIMED_OUT)),
    _m("wait", "cancel_run", W.PENDING, W.CANCELLED),
    # a run that ends closes the waits it left pending (a for_each sibling's), also
    # when its job's attempts ran out
    _m("wait", "finish_run", W.PENDING, W.CANCELLED),
    _m("wait", "reap_jobs", W.PENDING, W.CANCELLED),
)


# (verb, the status a run lands in) -> the end reasons that move may record, the
# first when the caller names none
END_REASONS: dict[tuple[str, str], tuple[EndReason, ...]] = {
    ("finish_run", R.COMPLETED): (E.COMPLETED,),
    **{("finish_run", st): (E.FAILED, E.TIMED_OUT) for st in (R.FAILED, *_COMPENSATION)},
    **{("finish_run(compensating)", st): (E.CANCELLED,) for st in (R.CANCELLED, *_COMPENSATION)},
    ("cancel_run", R.CANCELLED): (E.CANCELLED,),
    ("reap_jobs", R.FAILED): (E.FAILED,),
}


def end_reason(verb: str, status: str, given: EndReason | None = None) -> EndReason | None:
    """The end reason `verb` records when it moves a run to `status` (None: the run
    has not ended); `given` if the table allows it, else `InvalidArgumentError`."""
    allowed = END_REASONS.get((verb, str(status)))
    if allowed is None:
        if str(status) in TERMINAL:
            raise InvalidArgumentError(f"{verb} does not end a run {status}")
        return None
    if given is None:
        return allowed[0]
    if given not in allowed:
        raise InvalidArgumentError(f"{verb} ending a run {status} cannot record {given}")
    return given


def moves(kind: str, verb: str) -> Move:
    """The move of `verb` on a `kind` row."""
    return next(m for m in MOVES if m.kind == kind and m.verb == verb)


def _targets(*verbs: str) -> frozenset[str]:
    return frozenset(s for m in MOVES if m.kind == "run" and m.verb in verbs for s in m.dst)


# a run is terminal once it ended (finished, or was cancelled)
TERMINAL = _targets("finish_run", "cancel_run", "finish_run(compensating)", "reap_jobs")
# terminal runs closed to their owner's writes (bar a compensation's): they ended by
# cancellation, or their compensations ran
CLOSED = _targets("cancel_run", "finish_run(compensating)")
# runs a job's claim claims with it
JOB_RUN = frozenset(str(s) for s in moves("run", "claim_jobs").src)
# runs not ended yet (pending, running, waiting): an index's list, not a NOT IN
OPEN = frozenset(str(s) for s in RunStatus if str(s) not in TERMINAL)
# runs `rerun_from` may rewind
RERUNNABLE = moves("run", "rerun_from").src


def sql_set(statuses: frozenset[str]) -> str:
    """``('a', 'b')``, sorted, for SQL text."""
    return "(" + ", ".join(f"'{s}'" for s in sorted(statuses)) + ")"
