"""The api backend prices a model call only when the answer told its usage: as
`wf.ai` does, a call whose counts are missing (or contradict each other) has an
unknown cost, never one priced from the counts it left out."""

from __future__ import annotations

from pathlib import Path

from tether import ai
from tether.agents.backends import AgentEvent, ApiBackend, TurnRequest


async def _model_costs(tmp_path: Path, reply: ai.ModelReply) -> list[float | None]:
    prices = ai.Prices(
        {"fake:m": {"input_per_million": 1.0, "output_per_million": 2.0}}, genai_prices=False
    )
    backend = ApiBackend(ai.Providers(fake=ai.FakeModel([reply]), prices=prices), "fake:m")
    events: list[AgentEvent] = []

    async def on_event(event: AgentEvent) -> None:
        events.append(event)

    result = await backend.run_turn(TurnRequest("fix it", tmp_path, 1, 1, None, {}, 60.0), on_event)
    assert result.status == "completed"
    return [e.usage.cost_usd for e in events if e.kind == "model" and e.usage is not None]


async def test_a_call_that_told_no_output_count_has_an_unknown_cost(tmp_path: Path) -> None:
    """Before: the input it told was priced and the output it left out counted as free,
    so the turn's call row logged $0.001 as the known cost of a call billed for more."""
    told_input_only = ai.ModelReply(
        text="done", usage=ai.Usage(input_tokens=1000), usage_reported=False
    )
    assert await _model_costs(tmp_path, told_input_only) == [None]


async def test_a_call_that_told_its_usage_is_priced(tmp_path: Path) -> None:
    told = ai.ModelReply(text="done", usage=ai.Usage(input_tokens=1000, output_tokens=500))
    assert await _model_costs(tmp_path, told) == [0.002]
