"""AI usage rows as JSON (camelCase keys), both ways: the record export and its reader."""

from __future__ import annotations

from typing import Any

from .store import AIUsageRow

__all__ = ["usage_dict", "usage_row"]

# each count of a row, by its key in the JSON (the row's `group` is the key the
# JSON files it under); one table for both ways, in the row's order
_KEYS = (
    ("calls", "calls"),
    ("inputTokens", "input_tokens"),
    ("cachedInputTokens", "cached_input_tokens"),
    ("cacheWriteTokens", "cache_write_tokens"),
    ("outputTokens", "output_tokens"),
    ("reasoningTokens", "reasoning_tokens"),
    ("costMicroUsd", "cost_micro_usd"),
    ("unknownCostCalls", "unknown_cost_calls"),
    ("pricedCalls", "priced_calls"),
)


def usage_dict(r: AIUsageRow) -> dict[str, Any]:
    return {key: getattr(r, field) for key, field in _KEYS}


def usage_row(group: str, d: dict[str, Any]) -> AIUsageRow:
    counts = {field: d[key] for key, field in _KEYS if key in d}
    if "pricedCalls" not in d:  # written before it was counted: every call used tokens
        counts["priced_calls"] = d["calls"] - d["unknownCostCalls"]
    return AIUsageRow(group or None, **counts)
