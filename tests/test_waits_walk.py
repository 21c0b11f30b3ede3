"""Mistakes a user makes with waits and children, met with a clear error."""

from __future__ import annotations

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import InvalidArgumentError


async def _ids(app: App) -> set[str]:
    return {r.workflow_id for r in await app.alist_runs()}


async def test_a_child_given_an_input_its_workflow_does_not_take_is_refused(app: App) -> None:
    """Before, `wf.child(fn, 1)` with `fn(wf)` created the child, dropped the 1 unseen and
    ran it anyway (`app.run` refuses such an input); a one-parameter function was even
    handed the Workflow as its input and failed on returning it."""
    ran: list[str] = []

    @app.workflow
    async def no_input(wf: Workflow) -> str:
        ran.append("kid")
        return "done"

    @app.workflow
    async def parent(wf: Workflow, how: str) -> str:
        if how == "start":
            return await wf.start_child(no_input, 1)
        return str(await wf.child(no_input, 1))

    for how in ("wait", "start"):
        with pytest.raises(InvalidArgumentError, match=r"no_input' takes no input.*drop the"):
            await app.arun(parent, how, workflow_id=f"gives-{how}")
        assert (await app.aget_run(f"gives-{how}")).status is RunStatus.FAILED
    assert ran == []
    assert await _ids(app) == {"gives-start", "gives-wait"}  # no child run was created


async def test_a_child_missing_the_input_its_workflow_needs_is_refused(app: App) -> None:
    """Before, `wf.child(fn)` with `fn(wf, doc: str)` ran the child with doc None (its
    declared type and `app.run`'s refusal notwithstanding); now the parent's call says
    to pass an input, and no child is created."""
    seen: list[object] = []

    @app.workflow
    async def needs_doc(wf: Workflow, doc: str) -> int:
        seen.append(doc)
        return len(doc)

    @app.workflow
    async def parent(wf: Workflow, how: str) -> object:
        if how == "start":
            return await wf.start_child(needs_doc)
        return await wf.child(needs_doc)

    for how in ("wait", "start"):
        with pytest.raises(InvalidArgumentError, match=r"needs_doc' takes an input.*pass one"):
            await app.arun(parent, how, workflow_id=f"lacks-{how}")
        assert (await app.aget_run(f"lacks-{how}")).status is RunStatus.FAILED
    assert seen == []
    assert await _ids(app) == {"lacks-start", "lacks-wait"}


async def test_a_child_with_a_default_input_may_be_called_without_one(app: App) -> None:
    """The refusal above is for inputs without a default: one with a default runs."""

    @app.workflow
    async def greet(wf: Workflow, who: str = "world") -> str:
        return f"hello {who}"

    @app.workflow
    async def parent(wf: Workflow) -> list[str]:
        return [await wf.child(greet), await wf.child(greet, "ada")]

    res = await app.arun(parent, workflow_id="defaults")
    assert res.status is RunStatus.COMPLETED and res.value == ["hello world", "hello ada"]


async def test_sleep_of_none_says_it_needs_seconds(app: App) -> None:
    """Before, `wf.sleep(None)` failed the run with a bare AssertionError and no message."""

    @app.workflow
    async def nap(wf: Workflow) -> None:
        await wf.sleep(None)  # type: ignore[arg-type]

    with pytest.raises(InvalidArgumentError, match=r"sleep seconds must be .* got None"):
        await app.arun(nap, workflow_id="nap-none")


async def test_a_set_in_an_event_match_is_refused_not_left_to_time_out(
    app: App, clock: FakeClock
) -> None:
    """Before, `match={"status": {"done", "failed"}}` (meant as "any of") was written as a
    list and compared for equality: no event matched, and the wait ran to its timeout."""

    @app.workflow
    async def either(wf: Workflow) -> object:
        return await wf.wait_for_event(
            "job", match={"status": {"done", "failed"}}, timeout=60, default="never matched"
        )

    with pytest.raises(InvalidArgumentError, match=r"match\['status'\] is a set.*no 'any of'"):
        await app.arun(either, workflow_id="any-of")
    assert await app.asend_event("job", {"status": "done"}) == []
    assert (await app.aget_run("any-of")).status is RunStatus.FAILED
    clock.advance(61)
    assert await app.afire_due_timers() == []
