"""The scripted agent: one shared script, or one script per issue."""

from __future__ import annotations

from pathlib import Path

from tether.agents.backends import MockBackend, TurnRequest


def _turn(tmp: Path, ident: str) -> TurnRequest:
    return TurnRequest("p", tmp, 1, 1, None, {"identifier": ident}, 0)


async def _nothing(_: object) -> None:
    return None


async def test_a_script_by_issue_plays_each_issue_its_own_entries(tmp_path: Path) -> None:
    backend = MockBackend({"A-1": [{"result": "failed", "message": "no"}, {}]})
    first = await backend.run_turn(_turn(tmp_path, "A-1"), _nothing)
    other = await backend.run_turn(_turn(tmp_path, "B-1"), _nothing)  # not named: completes
    second = await backend.run_turn(_turn(tmp_path, "A-1"), _nothing)
    assert (first.status, first.message) == ("failed", "no")
    assert other.status == second.status == "completed"


async def test_a_shared_script_plays_its_entries_in_turn_order(tmp_path: Path) -> None:
    backend = MockBackend([{"result": "failed", "message": "no"}])
    first = await backend.run_turn(_turn(tmp_path, "B-1"), _nothing)
    second = await backend.run_turn(_turn(tmp_path, "A-1"), _nothing)
    assert (first.status, second.status) == ("failed", "completed")
