"""A ``budget.raise`` a run took holds for the runs it starts after it: their calls are
checked against its raised limits, not the ones it was created with (official SDK,
real local server, both backends)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether import App, ChildRunError, FakeClock, RunStatus, Workflow, ai

from .._env import child_pythonpath
from ._lineage import PRICES, M, lineage
from ._server import ProviderServer


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url), prices=PRICES
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _raised(events: Any) -> list[Any]:
    return [e for e in events if e.type == "budget.raised"]


async def test_a_child_started_after_its_parents_raise_is_checked_against_the_raised_budget(
    app: App, server: ProviderServer
) -> None:
    """The child read the parent's budget as the parent was created with ($1.50): the
    raise to $10 the parent had just taken stopped the child at once, "$3.6000 of
    $1.5000", and the harness had to raise it a second time, on the child."""

    @app.workflow(name="kid")
    async def kid(wf: Workflow) -> str:
        return (await wf.ai.generate_text(M, prompt="kid")).text

    @app.workflow(name="boss", budget=ai.Budget(max_usd=1.5, on_exceed="pause"))
    async def boss(wf: Workflow) -> list[Any]:
        said: list[Any] = [(await wf.ai.generate_text(M, prompt=f"q{i}")).text for i in range(3)]
        try:
            said.append(await wf.child(kid))
        except ChildRunError as exc:  # not reached once the raise holds for the child
            said.append(exc.status)
        return said

    parked = await app.arun(boss, workflow_id="b")
    assert parked.status is RunStatus.WAITING  # its third call stopped at $2.40 of $1.50
    await app.asignal("b", "budget.raise", {"max_usd": 10})
    done = await app.aresume("b")
    assert done.value == ["echo: q0", "echo: q1", "echo: q2", "echo: kid"]
    child = await app.aget_record("b/kid#1")
    assert [e.type for e in child.events if e.type.startswith("budget.")] == []
    [told] = _raised(done.record.events)
    assert told.detail == {"budget_of": "b", "raise": 1, "max_usd": 10.0, "max_tokens": None}
    assert told.message == "the run's budget raised by signal: max_usd=10.0"
    assert server.count("POST /v1/chat/completions") == 4


async def test_a_raise_is_told_once_though_parallel_branches_and_later_drives_take_it(
    app: App,
) -> None:
    @app.workflow(name="fan", budget=ai.Budget(max_usd=1, on_exceed="pause"))
    async def fan(wf: Workflow) -> int:
        await wf.ai.generate_text(M, prompt="first")  # $1.20: the budget is spent

        async def one(i: int) -> str:
            return (await wf.ai.generate_text(M, prompt=f"b{i}")).text

        await wf.for_each([0, 1, 2], one, max_parallel=3)  # all three stopped
        await wf.wait_for_signal("go")  # parks: the next drive replays the raise
        return len((await wf.for_each([3, 4], one, max_parallel=2)).results)

    assert (await app.arun(fan, workflow_id="f")).status is RunStatus.WAITING
    await app.asignal("f", "budget.raise", {"max_usd": 50})
    assert (await app.aresume("f")).status is RunStatus.WAITING  # on "go"
    await app.asignal("f", "go", None)
    done = await app.aresume("f")
    assert done.value == 2
    assert len(_raised(done.record.events)) == 1


async def test_a_raise_a_child_took_for_its_parents_budget_holds_for_its_descendants(
    app: App, server: ProviderServer
) -> None:
    """mid, stopped by top's budget, took the raise to $10 and recorded it in its own
    events; leaf and tip read only top's and were stopped at $1.50 ("$3.6000 of
    $1.5000"), each waiting for a raise of its own."""
    top = lineage(app)
    assert (await app.arun(top, workflow_id="t")).status is RunStatus.WAITING
    await app.asignal("t/mid#1", "budget.raise", {"max_usd": 10})
    assert (await app.aresume("t/mid#1")).status is RunStatus.WAITING  # leaf on "go"
    leaf = await app.aget_record("t/mid#1/leaf#1")
    assert [e.type for e in leaf.events if e.type.startswith("budget.")] == []
    await app.asignal("t/mid#1/leaf#1", "go", None)
    assert (await app.aresume("t/mid#1/leaf#1")).status is RunStatus.COMPLETED
    assert (await app.aresume("t/mid#1")).status is RunStatus.COMPLETED
    done = await app.aresume("t")
    assert done.value == ["echo: m0", "echo: m1", "echo: m2", "echo: leaf", "echo: leaf again",
                          "echo: tip"]  # fmt: skip
    for run in ("t/mid#1/leaf#1", "t/mid#1/leaf#1/tip#1"):
        record = await app.aget_record(run)
        assert [e.type for e in record.events if e.type.startswith("budget.")] == []
    assert server.count("POST /v1/chat/completions") == 6  # $7.20 of $10


_FLOWS = (
    "import os, tether; from tether import ai; from tests.ai._lineage import M, PRICES, lineage; "
    "providers = ai.Providers(openai=ai.OpenAI(api_key='k', base_url=os.environ['OPENAI_URL']), "
    "prices=PRICES); app = tether.App(os.environ['DB'], ai=providers, inline_wait=0); "
    "top = lineage(app); "
)


def _process(database_url: str, server: ProviderServer, code: str) -> str:
    """What `code` prints, run in a process of its own after `_FLOWS` (its memory empty)."""
    env = {**os.environ, "DB": database_url, "OPENAI_URL": server.openai_url,
           "PYTHONPATH": child_pythonpath(Path(__file__).parents[2])}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _FLOWS + code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_descendant_resumed_in_another_process_sees_the_raise_a_run_above_it_took(
    database_url: str, server: ProviderServer
) -> None:
    """leaf, parked on "go" after the raise mid took, drives on in a new process: it
    reads the raise from mid's recorded events, not from any memory of the drive."""
    first = _process(database_url, server,
        "app.run(top, workflow_id='t'); "
        "app.signal('t/mid#1', 'budget.raise', {'max_usd': 10}); "
        "print(app.resume('t/mid#1').status.value)",
    )  # fmt: skip
    assert first == "waiting"  # leaf, on "go"
    assert server.count("POST /v1/chat/completions") == 4
    second = _process(database_url, server,
        "app.signal('t/mid#1/leaf#1', 'go', None); "
        "print(app.resume('t/mid#1/leaf#1').status.value, app.resume('t/mid#1').status.value, "
        "app.resume('t').value)",
    )  # fmt: skip
    assert second == (
        "completed completed "
        "['echo: m0', 'echo: m1', 'echo: m2', 'echo: leaf', 'echo: leaf again', 'echo: tip']"
    )
    assert server.count("POST /v1/chat/completions") == 6
