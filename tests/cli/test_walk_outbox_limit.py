"""`tether outbox dead|replay --limit`: a list or a replay stopped at the limit says
more remain; "1 dead letter(s)" of three read as if the other two did not exist."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tether import App, FakeClock, Workflow

from ._helpers import tether

T0 = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def _three_dead_letters(url: str) -> None:
    """A run whose first three events a sink refused on their last attempt."""
    app = App(url, clock=FakeClock(T0))

    @app.workflow(name="notify")
    async def notify(wf: Workflow) -> int:
        return await wf.step("send", lambda: 1)

    app.run(notify, workflow_id="n1")
    failed = [("n1", seq, "HTTP 503", None) for seq in (1, 2, 3)]
    app.run_sync(app.store.outbox_mark(delivered=[], failed=failed, at=T0))
    app.close()


def test_a_dead_list_cut_at_its_limit_says_more_remain(tmp_path: Path) -> None:
    _three_dead_letters(f"sqlite:///{tmp_path}/t.db")
    cut = tether(tmp_path, "outbox", "dead", "--limit", "2")
    assert cut.returncode == 0, cut.stderr
    assert "the 2 longest dead shown; more dead letters" in cut.stdout
    assert "2 dead letter(s)" not in cut.stdout
    as_json = tether(tmp_path, "outbox", "dead", "--limit", "1", "--json")
    assert [d["seq"] for d in json.loads(as_json.stdout)] == [1]  # stdout: the array alone
    assert "more dead letters" in as_json.stderr
    whole = tether(tmp_path, "outbox", "dead", "--limit", "3")
    assert "3 dead letter(s); `tether outbox replay`" in whole.stdout
    assert "more dead letters" not in whole.stdout + whole.stderr


def test_a_replay_cut_at_its_limit_says_more_remain(tmp_path: Path) -> None:
    _three_dead_letters(f"sqlite:///{tmp_path}/t.db")
    first = tether(tmp_path, "outbox", "replay", "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert "2 dead letter(s) put back" in first.stdout
    assert "more dead letters remain" in first.stdout
    last = tether(tmp_path, "outbox", "replay", "--limit", "1")
    assert "1 dead letter(s) put back" in last.stdout
    assert "remain" not in last.stdout  # that was the last one
