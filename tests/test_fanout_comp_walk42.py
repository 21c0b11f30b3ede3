"""A failed fan-out's `ForEachError` read back from the run's record: in this process
(a replay) and in another process reading the failed run's result, on both stores."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._env import child_pythonpath
from tether import App, ForEachError, Workflow
from tether._fanout import ItemStatus

READER = textwrap.dedent(
    """
    import json, sys
    import tether

    app = tether.App(sys.argv[1])

    @app.workflow(name="fe42-fails")
    async def flow(wf: tether.Workflow) -> list:
        raise AssertionError("the failed run must be answered from its record")

    try:
        app.run(flow, workflow_id=sys.argv[2])
    except tether.ForEachError as exc:
        s = exc.summary
        print(json.dumps({
            "counts": [s.fulfilled, s.rejected, s.skipped],
            "results": [
                [r.index, r.item, r.status.value, r.value,
                 None if r.error is None else [type(r.error).__name__, str(r.error)]]
                for r in s.results
            ],
            "values": s.values,
            "first": [type(exc.first_error).__name__, str(exc.first_error)],
        }))
    finally:
        app.close()
    """
)


def _register(app: App) -> object:
    @app.workflow(name="fe42-fails")
    async def flow(wf: Workflow) -> list[object]:
        async def item(i: int) -> dict[str, int]:
            def work() -> dict[str, int]:
                if i == 1:
                    raise KeyError(f"no stock for {i}")
                return {"sku": i, "qty": i * 10}

            return await wf.step("work", work)  # type: ignore[no-any-return]

        return (await wf.for_each([0, 1, 2], item, max_parallel=1)).values

    return flow


async def test_a_failed_for_each_summary_is_read_back_in_another_process(
    app: App, database_url: str, tmp_path: Path
) -> None:
    """Before, the ForEachError rebuilt from the run's record (here on replay, and in
    another process asking for the result) had an empty summary: no results, counts 0."""
    flow = _register(app)
    with pytest.raises(ForEachError) as first:
        await app.arun(flow, workflow_id="fe42-fail")  # type: ignore[arg-type]
    assert [r.status for r in first.value.summary.results] == [
        ItemStatus.FULFILLED,
        ItemStatus.REJECTED,
        ItemStatus.SKIPPED,
    ]

    with pytest.raises(ForEachError) as again:  # the replay, in this process
        await app.arun(flow, workflow_id="fe42-fail")  # type: ignore[arg-type]
    summary = again.value.summary
    assert (summary.fulfilled, summary.rejected, summary.skipped) == (1, 1, 1)
    assert summary.values == [{"sku": 0, "qty": 0}, None, None]
    assert isinstance(summary.results[1].error, KeyError)
    assert summary.results[1].error.args == ("no stock for 1",)

    script = tmp_path / "reader.py"
    script.write_text(READER)
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), database_url, "fe42-fail"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "counts": [1, 1, 1],
        "results": [
            [0, 0, "fulfilled", {"sku": 0, "qty": 0}, None],
            [1, 1, "rejected", None, ["KeyError", "'no stock for 1'"]],
            [2, 2, "skipped", None, None],
        ],
        "values": [{"sku": 0, "qty": 0}, None, None],
        "first": ["KeyError", "'no stock for 1'"],
    }


async def test_a_huge_summary_is_recorded_lighter_with_every_outcome(app: App) -> None:
    """A summary of hundreds of big items, values and errors would make the run's error
    record megabytes, read by every replay and `runs show`: past its limit the items and
    values go, then the errors but the first few; each item's status stays."""
    from tether._fanout import _ERRORS_KEPT, SUMMARY_LIMIT

    @app.workflow(name="fe42-huge")
    async def huge(wf: Workflow) -> list[object]:
        def item(i: int) -> str:
            if i % 2:
                raise ValueError(f"item {i} " + "x" * 3000)
            return "v" * 3000

        summary = await wf.for_each(range(400), item, max_parallel=4, stop_on_error=False)
        raise ForEachError(summary, next(r.error for r in summary.results if r.error))

    with pytest.raises(ForEachError):
        await app.arun(huge, workflow_id="fe42-huge")
    run = await app.store.get_run("fe42-huge")
    assert run is not None and run.error is not None
    assert len(run.error) < SUMMARY_LIMIT + 20_000  # was ~2.5 MB
    with pytest.raises(ForEachError) as again:
        await app.arun(huge, workflow_id="fe42-huge")
    s = again.value.summary
    assert (s.fulfilled, s.rejected, len(s.results)) == (200, 200, 400)
    assert [r.index for r in s.results] == list(range(400))
    assert s.values == [None] * 400  # items and values left out first
    kept = [r for r in s.results if r.error is not None]
    assert len(kept) == _ERRORS_KEPT and str(kept[0].error).startswith("item 1 ")
