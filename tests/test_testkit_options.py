"""`memory_app` takes App's options (``ai=``, ``interceptors=``, ...), so a test needing
them keeps the kit's in-memory App instead of building its own. Before, it took only a
clock: `memory_app(interceptors=[...])` failed with a TypeError."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether import Proceed, StepCall, Workflow, ai
from tether.testing import memory_app


class Seen:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        self.keys.append(call.key)
        return await proceed()


async def test_app_options_reach_the_app_and_shutdown_grace_stays_zero() -> None:
    seen = Seen()
    fake = ai.FakeModel(["canned answer"])
    app = memory_app(interceptors=[seen], ai=ai.Providers(fake=fake))

    async def flow(wf: Workflow) -> str:
        reply = await wf.ai.generate_text("fake:small", prompt="hello")
        return await wf.step("echo", lambda: reply.text)

    try:
        assert (await app.arun(flow, workflow_id="f")).value == "canned answer"
    finally:
        await app.aclose()
    assert "echo" in seen.keys
    assert app.shutdown_grace == 0
    assert memory_app(shutdown_grace=5).shutdown_grace == 5  # given: kept


def test_an_unknown_option_is_refused_naming_the_ones_app_takes() -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"'interceptor'.*interceptors"):
        memory_app(interceptor=[Seen()])


@pytest.mark.parametrize("name", ["store", "database_url"])
def test_a_database_is_refused_the_app_lives_in_memory(name: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=rf"takes no {name}="):
        memory_app(**{name: "sqlite:///x.db"})
