"""`tether runs watch` redraws a run without reading its history each time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tether
from tether import App
from tether.cli.watch import RunReader
from tether.store import Store, open_store


def _counting(url: str) -> tuple[Store, list[int]]:
    """The SQLite store of `url`, counting the virtual-machine steps of what it runs (in
    thousands): rows read cost steps, so a read of the whole history shows as many."""
    work = [0]
    base: Any = type(open_store(url))

    def tick() -> int:
        work[0] += 1
        return 0

    class Counting(base):  # type: ignore[misc]
        async def open(self) -> None:
            await super().open()
            self._conn.set_progress_handler(tick, 1000)

    return Counting(url), work


def _redraw_cost(tmp_path: Path, steps: int) -> int:
    url = f"sqlite:///{tmp_path}/t{steps}.db"
    store, work = _counting(url)
    with App(store=store) as app:

        @app.workflow(name="long")
        async def long(wf: tether.Workflow) -> object:
            for i in range(steps):
                await wf.step(f"s{i}", lambda: "x" * 200)
            return await wf.wait_for_signal("go")

        app.run(long, workflow_id="r")
        reader = RunReader(app, "r")
        rec, waits, settled = reader.read()  # the first draw reads the record whole
        assert len(rec.steps) == steps and waits == ["signal:go#1"] and not settled
        work[0] = 0
        for _ in range(5):
            again, _, _ = reader.read()
            assert again is rec  # nothing changed: the record read before is shown
        return work[0]


def test_a_redraw_of_a_run_that_sits_still_reads_no_more_for_a_longer_history(
    tmp_path: Path,
) -> None:
    # before: every redraw read every step and event (`get_record`): 20 times the steps,
    # 20 times the work
    short, long = _redraw_cost(tmp_path, 20), _redraw_cost(tmp_path, 400)
    assert long <= short + 2, (short, long)


def test_a_redraw_after_the_run_moves_shows_the_change(tmp_path: Path) -> None:
    with App(f"sqlite:///{tmp_path}/t.db") as app:

        @app.workflow(name="waits")
        async def waits(wf: tether.Workflow) -> object:
            await wf.step("before", lambda: 1)
            return await wf.wait_for_signal("go")

        app.run(waits, workflow_id="r")
        reader = RunReader(app, "r")
        rec, open_waits, settled = reader.read()
        assert open_waits == ["signal:go#1"] and not settled
        app.signal("r", "go", 7)
        app.run(waits, workflow_id="r")
        rec, open_waits, settled = reader.read()
        assert settled and rec.status is tether.RunStatus.COMPLETED and open_waits == []
