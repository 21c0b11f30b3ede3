"""The wire models of AI usage repeat the store's row dataclasses on purpose (the
HTTP contract is its own definition; the store sits below the server): these pin
the two together, so a field added to a row reaches the API or is left out knowingly."""

from __future__ import annotations

from dataclasses import fields

from tether.server import AICall, UsageRow
from tether.store import AICallRow, AIUsageRow


def test_a_usage_row_on_the_wire_carries_every_total_the_store_sums() -> None:
    assert list(UsageRow.model_fields) == [f.name for f in fields(AIUsageRow)]


def test_an_ai_call_on_the_wire_is_a_known_subset_of_its_row() -> None:
    left_out = {f.name for f in fields(AICallRow)} - set(AICall.model_fields)
    assert set(AICall.model_fields) <= {f.name for f in fields(AICallRow)}
    assert left_out == {
        "prompt",
        "response",
        "service_tier",
        "budget_key",
        "batch_id",
        "custom_id",
    }
