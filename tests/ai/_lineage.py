"""Four runs sharing one pausing budget, for the tests of a raise reaching every run
below the one that took it (in this process and in others)."""

from __future__ import annotations

from typing import Any

from tether import App, Workflow, ai

M = "openai:gpt-4.1-mini"
# the server's echo answer is 15 tokens: $1.20 a call at this price
PRICES = ai.Prices({M: {"input_per_million": 80_000, "output_per_million": 80_000}})


def lineage(app: App) -> Any:
    """top ($1.50, pausing) -> mid (three calls, the third over $1.50) -> leaf -> tip:
    every run below top shares its budget; leaf and tip start after mid's third call,
    and leaf parks on signal "go" between its two calls."""

    @app.workflow(name="tip")
    async def tip(wf: Workflow) -> str:
        return (await wf.ai.generate_text(M, prompt="tip")).text

    @app.workflow(name="leaf")
    async def leaf(wf: Workflow) -> list[str]:
        said = [(await wf.ai.generate_text(M, prompt="leaf")).text]
        await wf.wait_for_signal("go")  # parks: its next drive reads the budgets again
        said.append((await wf.ai.generate_text(M, prompt="leaf again")).text)
        return [*said, await wf.child(tip)]

    @app.workflow(name="mid")
    async def mid(wf: Workflow) -> list[str]:
        said = [(await wf.ai.generate_text(M, prompt=f"m{i}")).text for i in range(3)]
        return said + await wf.child(leaf)

    @app.workflow(name="top", budget=ai.Budget(max_usd=1.5, on_exceed="pause"))
    async def top(wf: Workflow) -> list[str]:
        return await wf.child(mid)  # type: ignore[no-any-return]

    return top
