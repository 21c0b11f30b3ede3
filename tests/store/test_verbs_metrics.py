"""The metric verbs behind `tether top`, on both backends."""

from __future__ import annotations

import tether
from tether import App, FakeClock, ai
from tether.store import RunStatus


async def test_the_costliest_open_runs_come_first_and_ended_ones_not_at_all(
    database_url: str, clock: FakeClock
) -> None:
    replies = [f"r{i}" for i in range(6)]
    model = ai.FakeModel(replies, usage=ai.Usage(input_tokens=1000, output_tokens=100))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=clock, ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="asks")
    async def asks(wf: tether.Workflow, calls: int) -> object:
        for i in range(calls):
            await wf.ai.generate_text("demo:m", prompt=f"plan {i}")
        return await wf.wait_for_signal("go")

    try:
        await app.arun(asks, 1, workflow_id="one-call")
        await app.arun(asks, 3, workflow_id="three-calls")
        await app.arun(asks, 0, workflow_id="no-calls")
        await app.arun(asks, 2, workflow_id="ended")
        await app.asignal("ended", "go", 1)
        await app.arun(asks, 2, workflow_id="ended")

        found = await app.store.costliest_open_runs(5)
        assert [(u.group, name, status) for name, status, u in found] == [
            ("three-calls", "asks", RunStatus.WAITING),
            ("one-call", "asks", RunStatus.WAITING),
        ]
        assert [(u.calls, u.cost_micro_usd) for _, _, u in found] == [(3, 3600), (1, 1200)]
        assert [u.group for *_, u in await app.store.costliest_open_runs(1)] == ["three-calls"]
    finally:
        await app.aclose()
