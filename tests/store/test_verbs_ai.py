"""The AI verbs' queries: a budget's spend over a run's tree of runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tether.store import open_store


async def test_a_budget_over_a_tree_of_runs_reads_the_covering_indexes(tmp_path: Path) -> None:
    """A run's budget counts the runs it started: the recursive walk goes by the
    runs_parent index, and each run's calls are summed from the index that holds the
    columns (a keyed budget's from the key's)."""
    from tether.store._sql import queries

    store = open_store(f"sqlite:///{tmp_path}/tree.db")
    await store.open()
    await store.close()
    q = queries("sqlite")
    with sqlite3.connect(tmp_path / "tree.db") as conn:
        plans = {
            name: " ".join(
                str(r[-1])
                for r in conn.execute(
                    f"EXPLAIN QUERY PLAN {q[name]}", {"wid": "r", "bkey": "k", "since": 0.0}
                )
            )
            for name in ("ai_spend_tree", "ai_spend_key_tree", "ai_spend_run", "ai_spend_key")
        }
    # a period's calls are one range of the index (every call: the range from the epoch)
    assert "COVERING INDEX ai_calls_run_spend_at (run_id=? AND at>?)" in plans["ai_spend_tree"]
    assert (
        "COVERING INDEX ai_calls_key_spend_at (budget_key=? AND at>?)"
        in (plans["ai_spend_key_tree"])
    )
    assert "COVERING INDEX ai_calls_run_spend_at (run_id=? AND at>?)" in plans["ai_spend_run"]
    assert "COVERING INDEX ai_calls_key_spend_at (budget_key=? AND at>?)" in plans["ai_spend_key"]
    assert all("INDEX runs_parent" in plans[n] for n in ("ai_spend_tree", "ai_spend_key_tree"))
