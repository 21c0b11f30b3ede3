"""The status table of `_lifecycle`, walked against the store on both backends.

Every move the table allows is made from each of its source statuses and
must land in one of its targets; for the verbs that guard their source, every
other source status must be refused (an error, or nothing changed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from tether.errors import InvalidArgumentError, RunFinishedError, TetherError
from tether.store import (
    EndReason,
    Fence,
    JobStatus,
    NewEvent,
    NewJob,
    NewRun,
    NewWait,
    RunClaim,
    RunStatus,
    StepStatus,
    Store,
    WaitKind,
    WaitStatus,
)
from tether.store._lifecycle import CLOSED, END_REASONS, MOVES, TERMINAL, end_reason, moves
from tether.store._records import _TERMINAL

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EV = NewEvent("x")


def test_status_sets_derive_from_the_table() -> None:
    assert {s.value for s in _TERMINAL} == TERMINAL
    assert {s.value for s in RunStatus if s.terminal} == TERMINAL
    assert {"cancelled", "compensated", "compensation_failed"} == CLOSED
    kinds = {"run": RunStatus, "step": StepStatus, "job": JobStatus, "wait": WaitStatus}
    for m in MOVES:  # every status named is a real one
        assert {s for s in m.src if s is not None} | m.dst <= {s.value for s in kinds[m.kind]}
    for kind, enum in kinds.items():  # and every real status is reachable
        assert {s.value for s in enum} <= {d for m in MOVES if m.kind == kind for d in m.dst}


async def _gen(store: Store, wid: str) -> int:
    run = await store.get_run(wid)
    assert run is not None
    return run.generation


async def _run_in(
    store: Store, wid: str, status: str, *, job: bool = False, attempts: int = 10
) -> None:
    """A run reached `status` through the verbs, with one recorded step and a signal wait
    (and, with `job`, submitted with a job of `attempts` left queued)."""
    if job:
        new_job = NewJob(f"q-{wid}", max_attempts=attempts)
        await store.submit_run(NewRun(wid, "wf", state="null"), new_job, T0)
    else:
        await store.create_run(NewRun(wid, "wf", state="null"), T0)
    await store.save_value(Fence(wid), "s", "1", T0)
    if status in ("cancelled", "compensated", "compensation_failed"):
        await store.cancel_run(wid, reason=None, compensate=True, at=T0)
        if status != "cancelled":
            gen = (await store.claim_run(wid, "o", T0, EV, compensating=True)).generation
            fence = Fence(wid, gen, compensating=True)
            await store.finish_run(
                fence, RunStatus(status), output=None, error=None, at=T0, event=EV
            )
        return
    if status == "pending":
        return
    gen = (await store.claim_run(wid, "o", T0, EV)).generation
    if status == "waiting":
        await store.register_wait(Fence(wid, gen), NewWait("w", WaitKind.SIGNAL, "go"), T0)
        assert await store.park_run(Fence(wid, gen), ["w"], compute_seconds=0, at=T0)
    elif status in ("completed", "failed"):
        st = RunStatus(status)
        await store.finish_run(Fence(wid, gen), st, output="1", error=None, at=T0, event=EV)


async def _claim(store: Store, wid: str) -> object:
    return await store.claim_run(wid, "other", T0, EV, force=True)


async def _claim_comp(store: Store, wid: str) -> object:
    return await store.claim_run(wid, "other", T0, EV, compensating=True, force=True)


async def _claim_with_job(store: Store, wid: str) -> object:
    # once the owner's claim lapsed: a run another live process drives is never taken
    runs = RunClaim("other", 30.0, (("wf", None),))
    later = T0 + timedelta(seconds=60)
    jobs = await store.claim_jobs(
        "w", [f"q-{wid}"], limit=1, visibility=5, limits={}, now=later, at=T0, runs=runs
    )
    if not any(j.run for j in jobs):
        raise TetherError(f"{wid}: its job claimed no run")  # refused, as the table says
    return jobs


async def _reap_abandoned(store: Store, wid: str) -> object:
    # its job, on its last attempt, claimed by a worker that then stopped renewing it
    claimed = await store.claim_jobs(
        "w", [f"q-{wid}"], limit=1, visibility=5, limits={}, now=T0, at=T0
    )
    if not claimed:
        raise TetherError(f"{wid}: no job to claim")  # its run ended: the job closed
    return await store.reap_jobs(now=T0 + timedelta(seconds=10), at=T0)


async def _release(store: Store, wid: str) -> object:
    return await store.release_run(Fence(wid, await _gen(store, wid)), at=T0, event=EV)


async def _wake(store: Store, wid: str) -> object:
    return await store.send_signal(wid, "go", None, at=T0, expires_at=T0 + timedelta(days=1))


async def _finish(store: Store, wid: str) -> object:
    fence = Fence(wid, await _gen(store, wid))
    return await store.finish_run(
        fence, RunStatus.COMPLETED, output="1", error=None, at=T0, event=EV
    )


async def _finish_comp(store: Store, wid: str) -> object:
    fence = Fence(wid, await _gen(store, wid), compensating=True)
    return await store.finish_run(
        fence, RunStatus.COMPENSATED, output=None, error=None, at=T0, event=EV
    )


async def _cancel(store: Store, wid: str) -> object:
    return await store.cancel_run(wid, reason=None, compensate=False, at=T0)


async def _rerun(store: Store, wid: str) -> object:
    return await store.rerun_from(wid, "s", at=T0)


async def _retry_comp(store: Store, wid: str) -> object:
    return await store.retry_compensations(wid, at=T0)


async def _park(store: Store, wid: str) -> object:
    gen = await _gen(store, wid)
    await store.register_wait(Fence(wid, gen), NewWait("p", WaitKind.TIMER, due_at=T0), T0)
    return await store.park_run(Fence(wid, gen), ["p"], compute_seconds=0, at=T0)


# verb -> (how, whether it guards its source statuses)
RUN_VERBS: dict[str, tuple[Callable[[Store, str], Awaitable[object]], bool]] = {
    "claim_run": (_claim, True),
    "claim_run(compensating)": (_claim_comp, True),
    "claim_jobs": (_claim_with_job, True),
    "release_run": (_release, True),
    "park_run": (_park, False),
    "wake": (_wake, True),
    "finish_run": (_finish, True),
    "finish_run(compensating)": (_finish_comp, False),
    "cancel_run": (_cancel, True),
    "rerun_from": (_rerun, True),
    "retry_compensations": (_retry_comp, True),
    "reap_jobs": (_reap_abandoned, True),
}


@pytest.mark.parametrize("verb", sorted(RUN_VERBS))
async def test_run_moves(store: Store, verb: str) -> None:
    how, guarded = RUN_VERBS[verb]
    move = moves("run", verb)
    for status in RunStatus:
        allowed = status.value in move.src
        if not (allowed or guarded):
            continue
        wid = f"{status.value}"
        has_job = verb in ("claim_jobs", "reap_jobs")
        await _run_in(store, wid, status.value, job=has_job, attempts=1)
        try:
            await how(store, wid)
        except (TetherError, BaseException) as exc:  # RunCancelledError is a BaseException
            assert not allowed, f"{verb} from {status.value} refused: {exc!r}"
        run = await store.get_run(wid)
        assert run is not None
        if allowed:
            assert run.status.value in move.dst, f"{verb}: {status.value} -> {run.status.value}"
        else:
            assert run.status is status, f"{verb} moved a {status.value} run to {run.status}"


async def _job_in(store: Store, wid: str, status: str) -> int:
    await store.submit_run(NewRun(wid, "wf", state="null"), NewJob(f"q-{wid}"), T0)
    (job,) = await store.list_jobs(workflow_id=wid)
    if status == "cancelled":
        await store.cancel_run(wid, reason=None, compensate=False, at=T0)
    elif status != "queued":
        await store.claim_jobs("w", [f"q-{wid}"], limit=1, visibility=5, limits={}, now=T0, at=T0)
        await store.claim_run(wid, "w", T0, EV)
        if status != "claimed":
            err = None if status == "done" else '"e"'
            await store.finish_job(job.id, "w", error=err, ghost=False, at=T0)
    return job.id


async def _finish_run_of_job(store: Store, wid: str, _job: int) -> None:
    run = await store.claim_run(wid, "w", T0, EV, force=True)
    await store.finish_run(
        Fence(wid, run.generation), RunStatus.COMPLETED, output="1", error=None, at=T0, event=EV
    )


JOB_VERBS: dict[str, Callable[[Store, str, int], Awaitable[object]]] = {
    "finish_run": _finish_run_of_job,
    "claim_jobs": lambda s, w, j: s.claim_jobs(
        "w2", [f"q-{w}"], limit=1, visibility=5, limits={}, now=T0, at=T0
    ),
    "finish_job": lambda s, w, j: s.finish_job(j, "w", error=None, ghost=False, at=T0),
    "release_job": lambda s, w, j: s.release_job(j, "w", at=T0),
    "retry_job": lambda s, w, j: s.retry_job(j, "w", error="e", run_after=T0, at=T0),
    "reap_jobs": lambda s, w, j: s.reap_jobs(now=T0 + timedelta(seconds=10), at=T0),
    "cancel_run": lambda s, w, j: s.cancel_run(w, reason=None, compensate=False, at=T0),
    "cancel_run(compensating)": lambda s, w, j: s.cancel_run(
        w, reason=None, compensate=True, at=T0
    ),
}


@pytest.mark.parametrize("verb", sorted(JOB_VERBS))
async def test_job_moves(store: Store, verb: str) -> None:
    move = moves("job", verb)
    for status in JobStatus:
        wid = f"{verb}-{status.value}"
        job_id = await _job_in(store, wid, status.value)
        try:
            await JOB_VERBS[verb](store, wid, job_id)
        except TetherError:
            assert status.value not in move.src
        (job,) = [j for j in await store.list_jobs(workflow_id=wid) if j.id == job_id]
        if status.value in move.src:
            assert job.status.value in move.dst, f"{verb}: {status.value} -> {job.status.value}"
        else:
            assert job.status is status, f"{verb} moved a {status.value} job to {job.status}"


async def test_step_and_wait_moves(store: Store) -> None:
    await _run_in(store, "r", "running")
    f = Fence("r", await _gen(store, "r"))

    async def step(key: str) -> str:
        return {s.key: s.status.value for s in await store.load_steps("r")}[key]

    await store.start_step(f, "a", idempotency_key=None, at=T0, event=EV)
    assert await step("a") in moves("step", "start_step").dst
    await store.fail_step(f, "a", error='"e"', final=False, at=T0, event=EV)
    assert await step("a") in moves("step", "fail_step").dst
    await store.start_step(f, "a", idempotency_key=None, at=T0, event=EV)
    await store.complete_step(f, "a", result="1", at=T0, event=EV)
    assert await step("a") in moves("step", "complete_step").dst
    await store.start_step(f, "a", idempotency_key=None, at=T0, event=EV)  # completed -> running
    assert await step("a") == "running"

    async def wait(key: str) -> str:
        return {w.key: w.status.value for w in await store.list_waits("r")}[key]

    await store.register_wait(f, NewWait("tok", WaitKind.TOKEN, wait_id="tok"), T0)
    assert await wait("tok") in moves("wait", "register_wait").dst
    await store.complete_token("tok", None, at=T0)
    assert await wait("tok") in moves("wait", "resolve").dst
    with pytest.raises(TetherError):  # resolved is final
        await store.complete_token("tok", None, at=T0)
    await store.register_wait(f, NewWait("t", WaitKind.SIGNAL, "x", due_at=T0), T0)
    await store.fire_due(now=T0, at=T0)
    assert await wait("t") in moves("wait", "fire_due").dst
    await store.register_wait(f, NewWait("c", WaitKind.SIGNAL, "y"), T0)
    await store.cancel_run("r", reason=None, compensate=False, at=T0)
    assert await wait("c") in moves("wait", "cancel_run").dst
    assert await wait("t") == "timed_out"  # a closed wait is not moved again


async def test_a_run_failed_by_its_reaped_job_closes_its_pending_waits(store: Store) -> None:
    """A worker died holding the last attempt of a run with a wait pending (a for_each
    item parked while another ran): the run ends failed and the wait with it, so no
    timer fires for it and no signal answers it."""
    await _run_in(store, "rw", "pending", job=True, attempts=1)
    runs = RunClaim("w", 30.0, (("wf", None),))
    (job,) = await store.claim_jobs(
        "w", ["q-rw"], limit=1, visibility=5, limits={}, now=T0, at=T0, runs=runs
    )
    assert job.run is not None
    fence = Fence("rw", job.run.generation)
    await store.register_wait(fence, NewWait("s", WaitKind.SIGNAL, "go", due_at=T0), T0)
    assert await store.reap_jobs(now=T0 + timedelta(seconds=10), at=T0) == 1
    (wait,) = await store.list_waits("rw")
    assert wait.status.value in moves("wait", "reap_jobs").dst
    assert wait.resolved_at is not None
    assert await store.fire_due(now=T0 + timedelta(days=1), at=T0) == []
    with pytest.raises(RunFinishedError):
        await store.send_signal("rw", "go", None, at=T0, expires_at=T0 + timedelta(days=1))


def test_every_end_has_its_reasons() -> None:
    """Each move that lands a run in a terminal status names the reasons it records."""
    ends = {
        (m.verb, d)
        for m in MOVES
        if m.kind == "run"
        and m.verb in ("finish_run", "finish_run(compensating)", "cancel_run", "reap_jobs")
        for d in m.dst
        if d in TERMINAL
    }
    assert set(END_REASONS) == ends
    assert {r for rs in END_REASONS.values() for r in rs} == set(EndReason)
    assert end_reason("finish_run", RunStatus.RUNNING) is None  # not an end
    with pytest.raises(InvalidArgumentError):  # a failure is no completion
        end_reason("finish_run", RunStatus.FAILED, EndReason.COMPLETED)
    with pytest.raises(InvalidArgumentError):  # finish_run does not cancel
        end_reason("finish_run", RunStatus.CANCELLED)


@pytest.mark.parametrize(("verb", "status"), sorted(END_REASONS))
async def test_each_end_records_its_reason(store: Store, verb: str, status: str) -> None:
    """Made through the verbs on both backends: the run lands in `status` with the
    first reason the table names, or with any other it allows when asked for it."""
    for i, reason in enumerate(END_REASONS[(verb, status)]):
        wid = f"{verb}-{status}-{i}"
        if verb == "cancel_run":
            await _run_in(store, wid, "running")
            await store.cancel_run(wid, reason=None, compensate=False, at=T0)
        else:
            compensating = verb == "finish_run(compensating)"
            await _run_in(store, wid, "cancelled" if compensating else "running")
            if compensating:
                await store.claim_run(wid, "o", T0, EV, compensating=True)
            fence = Fence(wid, await _gen(store, wid), compensating=compensating)
            await store.finish_run(
                fence, RunStatus(status), output=None, error=None, at=T0, event=EV, reason=reason
            )
        run = await store.get_run(wid)
        assert run is not None
        assert (run.status.value, run.end_reason) == (status, reason)


async def test_only_an_ended_run_has_a_reason(store: Store) -> None:
    """Created, claimed, parked: none; a finished run rewound by rerun_from has none
    either until it ends again (a finished run is never claimed)."""
    for status in ("pending", "running", "waiting"):
        await _run_in(store, status, status)
        run = await store.get_run(status)
        assert run is not None and run.end_reason is None
    await _run_in(store, "done", "completed")
    assert (await store.get_run("done")).end_reason is EndReason.COMPLETED  # type: ignore[union-attr]
    with pytest.raises(RunFinishedError):
        await _claim(store, "done")
    assert (await store.get_run("done")).end_reason is EndReason.COMPLETED  # type: ignore[union-attr]
    await _run_in(store, "bad", "failed")
    assert (await store.get_run("bad")).end_reason is EndReason.FAILED  # type: ignore[union-attr]
    await _rerun(store, "bad")
    assert (await store.get_run("bad")).end_reason is None  # type: ignore[union-attr]
