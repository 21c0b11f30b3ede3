"""A host of one's own built on `tether.kernel.Kernel` directly (its own store, clock,
registry and host, no App): each command with good and bad input, on SQLite and
PostgreSQL. Bad input is an `InvalidArgumentError` naming what was wrong, whether the
command is dispatched as a dict, built as a model, or the kernel itself is built
wrong; a command for an unknown run says so."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from tether import App, Workflow
from tether.clock import SystemClock
from tether.definition import WorkflowDef
from tether.errors import InvalidArgumentError, RunNotFoundError, WorkflowNotFoundError
from tether.kernel import (
    JobExecute,
    Kernel,
    RunCancel,
    RunCancelled,
    RunCreate,
    RunCreated,
    RunRerunFrom,
    RunResume,
    RunResumed,
    Woken,
)
from tether.store import RunStatus, Store, open_store


async def _double(wf: Workflow, n: int) -> int:
    return await wf.step("double", lambda: n * 2)


class _Registry:
    def __init__(self) -> None:
        self.defs = {"double": WorkflowDef.make(_double, name="double")}

    def get_workflow(self, name: str, workflow_id: str | None = None) -> WorkflowDef:
        if name not in self.defs:
            raise WorkflowNotFoundError(name)
        return self.defs[name]


class _Host:
    """Drives nothing here: it records what the kernel asks it to drive."""

    def __init__(self) -> None:
        self.spawned: list[str] = []
        self.woken_ids: list[str] = []
        self.cancelled_ids: list[str] = []

    def spawn(self, workflow_id: str) -> None:
        self.spawned.append(workflow_id)

    def woken(self, run_ids: list[str]) -> None:
        self.woken_ids.extend(run_ids)

    def cancelled(self, run_ids: list[str]) -> None:
        self.cancelled_ids.extend(run_ids)

    async def run_until_rest(self, workflow_id: str, **kwargs: Any) -> Any:
        raise AssertionError("no job is executed in these tests")

    def run_claim(self) -> Any:
        raise AssertionError("no job is claimed in these tests")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    the_store = open_store(database_url)
    yield the_store
    await the_store.close()


async def test_each_command_on_a_kernel_of_ones_own(store: Store) -> None:
    host = _Host()
    kernel = Kernel(store, SystemClock(), _Registry(), host)
    made = await kernel.adispatch(RunCreate(workflow="double", input=2, workflow_id="r1"))
    assert made == RunCreated(workflow_id="r1", created=True) and host.spawned == ["r1"]
    again = await kernel.adispatch({"type": "run.create", "workflow": "double", "input": 2,
                                    "workflow_id": "r1"})  # fmt: skip
    assert again == RunCreated(workflow_id="r1", created=False) and host.spawned == ["r1"]
    with pytest.raises(WorkflowNotFoundError):
        await kernel.adispatch(RunCreate(workflow="nope"))
    with pytest.raises(InvalidArgumentError, match="does not fit its declared type int"):
        await kernel.adispatch(RunCreate(workflow="double", input="two"))
    for unknown in (
        RunCancel(workflow_id="ghost"),
        RunResume(kind="signal", name="go", workflow_id="ghost"),
        RunRerunFrom(workflow_id="ghost", step="double"),
    ):
        with pytest.raises(RunNotFoundError, match="no run with workflow id 'ghost'"):
            await kernel.adispatch(unknown)
    with pytest.raises(InvalidArgumentError, match="job 1 of run 'ghost' is not claimed"):
        await kernel.adispatch(JobExecute(job_id=1, workflow_id="ghost", worker="w1"))
    sent = await kernel.adispatch(RunResume(kind="signal", name="go", workflow_id="r1"))
    assert sent == RunResumed(woken=[], workflow_id="r1")
    cancel = RunCancel(workflow_id="r1", reason="walk", idempotency_key="cancel-r1")
    first = await kernel.adispatch(cancel)
    assert first == RunCancelled(cancelled=["r1"])
    assert await kernel.adispatch(cancel) == first  # the key replays the first result
    with pytest.raises(tether.RunFinishedError, match="already ended"):
        await kernel.adispatch(RunCancel(workflow_id="r1"))  # no key: it has ended


@pytest.mark.parametrize(
    ("build", "what"),
    [
        (lambda: RunCancel(workflow_id=""), r"run\.cancel\.workflow_id: String should have"),
        (lambda: RunCancel(workflow_id="r", why="x"), r"run\.cancel\.why: Extra inputs"),
        (lambda: RunResume(kind="mail", name="n"), r"run\.resume\.kind: Input should be"),
        (
            lambda: RunResume(kind="event", name="n", workflow_id="r"),
            r"run\.resume: workflow_id names the run of a signal",
        ),
        (lambda: RunCreate(workflow="w", max_attempts=3), r"run\.create: max_attempts set"),
        (lambda: JobExecute(job_id=0, workflow_id="r", worker="w"), r"job\.execute\.job_id"),
    ],
)
def test_a_command_built_with_bad_fields_is_an_invalid_argument(build: Any, what: str) -> None:
    # built as a model (as a host of one's own builds them) it raised pydantic's bare
    # ValidationError, no TetherError; dispatched as a dict it was InvalidArgumentError
    with pytest.raises(InvalidArgumentError, match=f"^invalid command: {what}"):
        build()


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"store": "sqlite:///x.db"}, "Kernel store must have create_run"),
        ({"registry": object()}, "Kernel registry must have get_workflow"),
        ({"host": None}, "Kernel host must have spawn, woken"),
        ({"clock": "utc"}, "Kernel clock must have now"),
        ({"job_visibility": "30"}, "job_visibility must be a number of seconds"),
        ({"job_visibility": math.nan}, "job_visibility must be a number of seconds"),
        ({"inbox_retention": math.inf}, "inbox_retention must be a number of seconds"),
        ({"inbox_retention": -1}, "inbox_retention must be a number of seconds"),
        ({"idempotency_stale_after": "5m"}, "idempotency_stale_after must be a number"),
    ],
)
async def test_a_kernel_built_wrong_says_so_when_built(
    sqlite_url: str, change: dict[str, Any], what: str
) -> None:
    # each was kept: a str visibility was a bare TypeError; the others failed the first
    # command with an AttributeError, or a signal with "cannot convert float infinity"
    store = open_store(sqlite_url)
    ports: dict[str, Any] = {
        "store": store, "clock": SystemClock(), "registry": _Registry(), "host": _Host()
    }  # fmt: skip
    args = {**ports, **change}
    options = {k: args.pop(k) for k in list(args) if k not in ports}
    with pytest.raises(InvalidArgumentError, match=what):
        Kernel(args["store"], args["clock"], args["registry"], args["host"], **options)
    await store.close()


@pytest.mark.parametrize(
    ("budget", "what"),
    [
        ("{not json", "budget must be JSON of tether.ai.Budget fields"),
        ('{"max_udd": 2}', "budget is not valid"),
        ('{"max_usd": -1}', "budget is not valid"),
        ("[1]", "budget must be an ai.Budget or a dict"),
    ],
)
async def test_a_rerun_with_a_budget_that_is_none_is_refused(
    database_url: str, budget: str, what: str
) -> None:
    # stored as given: the run then ran again, and its first AI call failed on the
    # budget (a JSONDecodeError), or spent with no cap (a misspelt limit)
    async with App(database_url) as app:

        @app.workflow(name="double")
        async def double(wf: Workflow, n: int) -> int:
            return await wf.step("double", lambda: n * 2)

        done = await app.arun(double, 3, workflow_id="r1")
        assert done.value == 6
    store = open_store(database_url)
    host = _Host()
    try:
        kernel = Kernel(store, SystemClock(), _Registry(), host)
        with pytest.raises(InvalidArgumentError, match=what):
            await kernel.adispatch(RunRerunFrom(workflow_id="r1", step="double", budget=budget))
        run = await store.get_run("r1")
        assert run is not None and run.status is RunStatus.COMPLETED and run.budget is None
        good = RunRerunFrom(workflow_id="r1", step="double", budget='{"max_usd": 2}')
        assert await kernel.adispatch(good) == Woken(woken=["r1"]) and host.woken_ids == ["r1"]
        run = await store.get_run("r1")
        assert run is not None and json.loads(run.budget or "null")["max_usd"] == 2
    finally:
        await store.close()
