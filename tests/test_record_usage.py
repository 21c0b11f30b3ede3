"""A run's AI usage in the record's JSON: the total's counts, then each model's."""

from __future__ import annotations

from tether.record import RunUsage
from tether.store import AIUsageRow

ROWS = [
    AIUsageRow("openai:gpt", 2, 100, 10, 5, 40, 8, 300, 0, 2),
    AIUsageRow("anthropic:claude", 1, 50, 0, 0, 20, 0, 0, 1, 0),
]


def test_the_total_is_written_first_then_each_model() -> None:
    usage = RunUsage.build(ROWS)
    assert usage is not None
    assert usage.to_dict() == {
        "calls": 3,
        "inputTokens": 150,
        "cachedInputTokens": 10,
        "cacheWriteTokens": 5,
        "outputTokens": 60,
        "reasoningTokens": 8,
        "costMicroUsd": 300,
        "unknownCostCalls": 1,
        "pricedCalls": 2,
        "byModel": {
            "openai:gpt": {
                "calls": 2,
                "inputTokens": 100,
                "cachedInputTokens": 10,
                "cacheWriteTokens": 5,
                "outputTokens": 40,
                "reasoningTokens": 8,
                "costMicroUsd": 300,
                "unknownCostCalls": 0,
                "pricedCalls": 2,
            },
            "anthropic:claude": {
                "calls": 1,
                "inputTokens": 50,
                "cachedInputTokens": 0,
                "cacheWriteTokens": 0,
                "outputTokens": 20,
                "reasoningTokens": 0,
                "costMicroUsd": 0,
                "unknownCostCalls": 1,
                "pricedCalls": 0,
            },
        },
    }
    assert list(usage.to_dict())[-1] == "byModel"


def test_it_reads_back_to_the_same_usage() -> None:
    usage = RunUsage.build(ROWS)
    assert usage is not None
    assert RunUsage.from_dict(usage.to_dict()) == usage
