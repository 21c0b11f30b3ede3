"""AI usage rows as JSON (camelCase keys), both ways: the record export and its reader."""

from __future__ import annotations

from typing import Any

from .store import AIUsageRow

__all__ = ["usage_dict", "usage_row"]


def usage_dict(r: AIUsageRow) -> dict[str, Any]:
    return {
        "calls": r.calls,
        "inputTokens": r.input_tokens,
        "cachedInputTokens": r.cached_input_tokens,
        "cacheWriteTokens": r.cache_write_tokens,
        "outputTokens": r.output_tokens,
        "reasoningTokens": r.reasoning_tokens,
        "costMicroUsd": r.cost_micro_usd,
        "unknownCostCalls": r.unknown_cost_calls,
    }


def usage_row(group: str, d: dict[str, Any]) -> AIUsageRow:
    return AIUsageRow(
        group or None,
        d["calls"],
        d["inputTokens"],
        d["cachedInputTokens"],
        d["cacheWriteTokens"],
        d["outputTokens"],
        d["reasoningTokens"],
        d["costMicroUsd"],
        d["unknownCostCalls"],
    )
