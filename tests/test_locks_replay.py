"""A mutex block the run left in an earlier drive is not taken again when the run is
replayed: nothing in it runs again. Before, a resumed run waited for the key once
more, behind a run now holding it (parked inside its own block), for up to its
timeout (an hour for a `for_each` item), then failed with `MutexTimeoutError`,
though the block's work was all recorded."""

from __future__ import annotations

from tether import App, RunStatus, Workflow


def _holder(app: App) -> object:
    @app.workflow(name="holder")
    async def holder(wf: Workflow) -> str:
        async with wf.mutex("acme"):
            await wf.wait_for_signal("free")  # parks inside its block: it keeps the key
        return "held"

    return holder


async def test_a_block_left_before_is_not_taken_again_on_replay(app: App) -> None:
    sent: list[str] = []

    @app.workflow(name="blocked")
    async def blocked(wf: Workflow) -> list[str]:
        async with wf.mutex("acme", timeout=0.3):
            await wf.step("send", lambda: sent.append("acme"))
        await wf.wait_for_signal("next")
        async with wf.mutex("beta", timeout=0.3):  # a new block after it is taken as ever
            await wf.step("send#beta", lambda: sent.append("beta"))
        return sent

    holder = _holder(app)
    assert (await app.arun(blocked, workflow_id="b")).status is RunStatus.WAITING
    assert (await app.arun(holder, workflow_id="h")).status is RunStatus.WAITING
    await app.asignal("b", "next")
    done = await app.aresult("b", timeout=30)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert sent == ["acme", "beta"]  # each sent once
    await app.asignal("h", "free")
    assert (await app.aresult("h", timeout=30)).value == "held"


async def test_a_for_each_item_left_before_is_not_queued_for_its_key_again(app: App) -> None:
    sent: list[str] = []

    @app.workflow(name="items")
    async def items(wf: Workflow) -> int:
        async def one(company: str) -> None:
            await wf.step("send", lambda: sent.append(company))

        await wf.for_each(["acme", "beta"], one, mutex_key=str, mutex_timeout=0.3)
        await wf.wait_for_signal("next")
        return len(sent)

    holder = _holder(app)
    assert (await app.arun(items, workflow_id="i")).status is RunStatus.WAITING
    assert (await app.arun(holder, workflow_id="h")).status is RunStatus.WAITING
    await app.asignal("i", "next")
    done = await app.aresult("i", timeout=30)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == 2 and sent == ["acme", "beta"]
