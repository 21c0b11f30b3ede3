"""A new user's walk of queue caps with two real `tether worker` processes contending
for one database: a rate-capped queue starts no more than its rate in any window, a
run of a better priority goes first, and every job runs exactly once."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from tether import App, RunStatus

from .test_queues_walk import FLOWS, _worker
from .test_worker import _stop

RATED = FLOWS + '\napp.queue("rated", rate_per_second=2)\n'


@pytest.fixture
def rated(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "walkflows.py").write_text(RATED)
    monkeypatch.setenv("DB_URL", database_url)
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects.log"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("walkflows", None)
    return tmp_path


def _load_app() -> App:
    import walkflows  # type: ignore[import-not-found]

    return walkflows.app  # type: ignore[no-any-return]


def _claimed_at(app: App, wid: str) -> list[float]:
    """When workers claimed run `wid` (each claim takes the run: `workflow.running`)."""
    events = app.get_record(wid).events
    return [e.at.timestamp() for e in events if e.type == "workflow.running"]


def test_two_workers_start_a_rate_capped_queue_at_its_rate(rated: Path) -> None:
    app = _load_app()
    procs = [_worker(rated, "-q", "rated", "--concurrency", "4") for _ in range(2)]
    try:
        tagged = app.get_workflow("keyed").fn
        ids = [app.submit(tagged, "rate", queue="rated") for _ in range(7)]
        for wid in ids:
            assert app.result(wid, timeout=120).status is RunStatus.COMPLETED
    finally:
        _stop(procs)
    assert [p.returncode for p in procs] == [0, 0]
    starts = sorted(t for wid in ids for t in _claimed_at(app, wid))
    assert len(starts) == 7  # each claimed once
    # 2 per second: any 3 consecutive claims span a second on the database's clock; the
    # events carry the time each worker read before its claim, which a loaded machine
    # may delay by a good part of a second (uncapped, all 7 start within a quarter)
    assert all(starts[i + 2] - starts[i] >= 0.5 for i in range(len(starts) - 2)), starts
    lines = Counter(line.split()[0] for line in (rated / "effects.log").read_text().splitlines())
    assert lines == {"rate": 7}
    app.close()
