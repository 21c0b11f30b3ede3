"""A dispatched command is checked as the App's own calls are: what cannot be a
command, a name the database cannot store, a naive `run_after`, each refused with
an `InvalidArgumentError` naming what was wrong, and nothing created."""

from __future__ import annotations

import pytest

import tether
from tether import App, Workflow


@pytest.mark.parametrize("payload", [None, "run.create", ["run.create"], 42])
async def test_something_that_is_no_command_is_refused_clearly(app: App, payload: object) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"pass a command of tether\.kernel"):
        await app.kernel.adispatch(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"workflow_id": "a\x00b"}, r"workflow_id .* contains a NUL"),
        ({"workflow_id": "   "}, "workflow_id must be a non-empty string"),
        ({"queue": "q\x00", "workflow_id": "r1"}, r"queue .* contains a NUL"),
        ({"idempotency_key": "k" * 1001}, "idempotency_key .* bytes long"),
        (
            {"run_after": "2026-01-01T00:00:00", "queue": "q"},
            "run_after: Input should have timezone",
        ),
        # bounds of App.submit: PostgreSQL refused these with a bare "integer out of
        # range" store error, SQLite stored them; a run_after past 9998 in UTC was
        # stored, then every read of the queue (/metrics) failed with "year 10000"
        ({"priority": 2**31, "queue": "q"}, "priority: Input should be less than or equal"),
        ({"priority": -(2**31), "queue": "q"}, "priority: Input should be greater than"),
        ({"max_attempts": 2**40, "queue": "q"}, "max_attempts: Input should be less than"),
        (
            {"run_after": "9999-12-31T23:59:00-05:00", "queue": "q"},
            "run_after: .* outside the years 1 to 9998 in UTC",
        ),
    ],
)
async def test_a_run_create_the_app_would_refuse_is_refused_by_the_kernel(
    app: App, extra: dict[str, object], what: str
) -> None:
    @app.workflow(name="w")
    async def w(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")

    with pytest.raises(tether.InvalidArgumentError, match=f"invalid command: .*{what}"):
        await app.kernel.adispatch({"type": "run.create", "workflow": "w", **extra})
    assert await app.store.list_runs() == []


@pytest.mark.parametrize(
    ("command", "what"),
    [
        # PostgreSQL refused these with a bare store error ("interval out of range",
        # "timestamp out of range", "cannot contain NUL"); SQLite took them
        ({"type": "run.reap_stuck", "idle_for": "inf"}, r"idle_for: Input should be less"),
        ({"type": "run.reap_stuck", "idle_for": 1e300}, r"idle_for: Input should be less"),
        (
            {"type": "run.adopt_orphans", "queue": "q", "workflows": ["w"], "grace": "inf"},
            r"grace: Input should be less",
        ),
        (
            {"type": "run.adopt_orphans", "queue": "q", "workflows": ["w\x00"]},
            r"workflows: .*contains a NUL",
        ),
        # SQLite raised a bare OverflowError
        (
            {"type": "job.execute", "job_id": 10**30, "workflow_id": "r", "worker": "me"},
            r"job_id: Input should be less than or equal",
        ),
    ],
)
async def test_a_maintenance_command_the_database_cannot_take_is_refused(
    app: App, command: dict[str, object], what: str
) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=f"invalid command: .*{what}"):
        await app.kernel.adispatch(command)


@pytest.mark.parametrize("reason", ["stop\x00now", "half \ud83d"])
async def test_a_cancel_reason_no_database_can_store_is_refused(app: App, reason: str) -> None:
    """The reason is written in the cancel event: a NUL was kept on SQLite and refused
    by PostgreSQL with a bare store error, a lone surrogate refused by both."""

    @app.workflow(name="parks")
    async def parks(wf: Workflow) -> object:
        return await wf.wait_for_signal("go")

    await app.arun(parks, workflow_id="p1")
    with pytest.raises(tether.InvalidArgumentError, match=r"reason .* contains a NUL"):
        await app.acancel("p1", reason)
    with pytest.raises(tether.InvalidArgumentError, match=r"reason .* contains a NUL"):
        await app.kernel.adispatch({"type": "run.cancel", "workflow_id": "p1", "reason": reason})
    assert (await app.aget_run("p1")).status is tether.RunStatus.WAITING  # nothing changed
    assert await app.acancel("p1", "stop now") == ["p1"]
