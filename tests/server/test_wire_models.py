"""The wire models of AI usage repeat the store's row dataclasses on purpose (the
HTTP contract is its own definition; the store sits below the server): these pin
the two together, so a field added to a row reaches the API or is left out knowingly."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from tether import WaitInfo
from tether.server import AICall, UsageRow, WaitSummary
from tether.store import AICallRow, AIUsageRow, WaitKind, WaitStatus


def test_a_usage_row_on_the_wire_carries_every_total_the_store_sums() -> None:
    assert list(UsageRow.model_fields) == [f.name for f in fields(AIUsageRow)]


def test_an_ai_call_on_the_wire_is_a_known_subset_of_its_row() -> None:
    left_out = {f.name for f in fields(AICallRow)} - set(AICall.model_fields)
    assert set(AICall.model_fields) <= {f.name for f in fields(AICallRow)}
    assert left_out == {"prompt", "response"}  # what the model said stays off the wire


def test_an_ai_calls_tier_budget_and_batch_reach_the_wire_and_an_older_answer_still_reads() -> None:
    row = AICallRow(
        id=1, workflow_id="w", step_key="s", attempt=1, call_type="text", provider="demo",
        model="demo:m", request_id=None, prompt="secret", response="answer", input_tokens=1,
        cached_input_tokens=0, cache_write_tokens=0, output_tokens=1, reasoning_tokens=0,
        cost_micro_usd=5, price_source=None, service_tier="flex", latency_ms=3,
        at=datetime(2026, 1, 1, tzinfo=UTC), error=None, budget_key="team-a", batch_id="b1",
        custom_id="c1",
    )  # fmt: skip
    wire = AICall.of(row).model_dump(mode="json")
    assert {k: wire[k] for k in ("service_tier", "budget_key", "batch_id", "custom_id")} == {
        "service_tier": "flex", "budget_key": "team-a", "batch_id": "b1", "custom_id": "c1"
    }  # fmt: skip
    assert "prompt" not in wire and "response" not in wire
    older = {k: v for k, v in wire.items() if k not in ("service_tier", "budget_key", "batch_id",
                                                         "custom_id")}  # fmt: skip
    assert AICall.model_validate(older).budget_key is None


def test_a_wait_on_the_wire_carries_its_match_decoded_and_an_older_answer_still_reads() -> None:
    """`runs show --server` says what an event must match, as `runs show --db` does: the
    wire's wait had no `match`. The payload stays off it (`runs show` does not print it)."""
    left_out = {f.name for f in fields(WaitInfo)} - set(WaitSummary.model_fields)
    assert set(WaitSummary.model_fields) <= {f.name for f in fields(WaitInfo)}
    assert left_out == {"workflow_id", "payload"}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    wait = WaitInfo("w1", "run", "event:paid#1", WaitKind.EVENT, "paid", '{"order":7}',
                    WaitStatus.PENDING, None, None, at, None)  # fmt: skip
    wire = WaitSummary.of(wait).model_dump(mode="json")
    assert wire["match"] == {"order": 7} and wire["kind"] == "event"
    older = {k: v for k, v in wire.items() if k != "match"}
    assert WaitSummary.model_validate(older).match is None
