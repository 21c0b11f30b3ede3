"""A mutex written as something else than ``async with wf.mutex(key):``, as a new user
might (``await wf.mutex(k)``, a plain ``with``): an error saying how to write it. It
was a bare TypeError about an ``_AsyncGeneratorContextManager``."""

from __future__ import annotations

import pytest

import tether
from tether import App, Workflow


async def test_awaiting_the_mutex_says_to_use_async_with(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.mutex("invoice:7", timeout=1.0)

    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.arun(flow, workflow_id="mutex-awaited")
    text = str(caught.value)
    assert "`await wf.mutex(...)` cannot hold mutex 'invoice:7'" in text
    assert "async with wf.mutex('invoice:7'):" in text
    assert "wf.with_mutex('invoice:7', fn)" in text


async def test_a_plain_with_says_to_use_async_with(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        with wf.mutex("invoice:7", timeout=1.0):
            raise AssertionError("never entered")

    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.arun(flow, workflow_id="mutex-with")
    text = str(caught.value)
    assert "a plain `with wf.mutex(...)` cannot hold mutex 'invoice:7'" in text
    assert "async with wf.mutex('invoice:7'):" in text


async def test_a_misused_mutex_takes_nothing_and_async_with_still_holds_it(app: App) -> None:
    async def flow(wf: Workflow) -> str:
        block = wf.mutex("invoice:7", timeout=1.0)
        with pytest.raises(tether.InvalidArgumentError):
            await block
        async with wf.mutex("invoice:7", timeout=1.0) as handle:
            return handle.key

    result = await app.arun(flow, workflow_id="mutex-right")
    assert result.value == "invoice:7"
    types = [e.type for e in result.record.events if e.type.startswith("mutex.")]
    assert types == ["mutex.acquired", "mutex.released"]  # once: the misuse took nothing
