"""Async-batch stages: submit, park on a durable timer, check until ready, on the
fake clock and across a worker restart; max_wait; cancel while suspended."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, ai
from tether.worker import ServerlessHost

from ._flows import Doc

BATCHES: dict[str, dict[str, Any]] = {}  # the "provider": batch id -> its state


class Answers(BaseModel):
    answers: list[str]


@tether.batch_stage(id="embed-all", input=Doc, output=Answers)
async def embed_all(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
    def submit() -> str:
        bid = f"batch-{len(BATCHES) + 1}"
        BATCHES[bid] = {"checks": 0, "ready_after": 2, "cancelled": False, "url": ctx.input.url}
        return bid

    bid = await ctx.workflow.step("submit", submit)
    return tether.Suspend({"batch_id": bid}, poll_every=60, max_wait=600)


@embed_all.check
async def _check(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
    b = BATCHES[state["batch_id"]]
    b["checks"] += 1
    if b.get("db"):  # prove no transaction is open: take the write lock at once
        conn = sqlite3.connect(b["db"], timeout=0)
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        conn.close()
    if b["checks"] <= b["ready_after"]:
        return tether.NotReady(next_check_in=b.get("next", None))
    return tether.Ready(Answers(answers=[b["url"].upper()]))


@embed_all.on_cancel
async def _cancel(state: dict[str, Any]) -> None:
    BATCHES[state["batch_id"]]["cancelled"] = True


batch_pipeline = tether.Pipeline("batcher", input=Doc, output=Answers).pipe(embed_all)


@pytest.fixture(autouse=True)
def _fresh_batches() -> None:
    BATCHES.clear()


async def _process(app: App) -> None:
    await ServerlessHost(app).aprocess_available_jobs(limit=10)


async def test_not_ready_twice_then_ready_across_a_worker_restart(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock)
    app.register(batch_pipeline)
    wid = await app.asubmit(batch_pipeline, Doc(url="u"), workflow_id="bt")
    await _process(app)
    assert (await app.aget_run(wid)).status is RunStatus.WAITING  # parked, worker freed
    assert BATCHES["batch-1"]["checks"] == 1
    rec = await app.aget_record(wid)
    assert rec.stages[0].status == "suspended"
    await app.aclose()

    for checks in (2, 3):  # a new worker each time: the check runs wherever the run is taken
        app = App(database_url, clock=clock)
        app.register(batch_pipeline)
        clock.advance(59)
        assert await app.afire_due_timers() == []  # not before poll_every
        clock.advance(1)
        assert await app.afire_due_timers() == [wid]
        await _process(app)
        assert BATCHES["batch-1"]["checks"] == checks
        if checks < 3:
            await app.aclose()

    result = await app.aresult(wid, timeout=10)
    assert result.value == Answers(answers=["U"])
    assert len(BATCHES) == 1  # submitted once
    assert result.record.stages[0].status == "completed"
    polled = [e for e in result.record.events if e.type == "stage.polled"]
    assert len(polled) == 2
    await app.aclose()


async def test_max_wait_is_enforced_and_the_batch_cancelled(app: App, clock: FakeClock) -> None:
    app.register(batch_pipeline)
    BATCHES["batch-1"] = {}  # the next submit is batch-2
    parked = await app.arun(batch_pipeline, Doc(url="u"), workflow_id="slow")
    assert parked.status is RunStatus.WAITING
    BATCHES["batch-2"]["ready_after"] = 10**6
    BATCHES["batch-2"]["next"] = 500.0  # the check asks for 500 s; max_wait caps it
    with pytest.raises(tether.StageTimeoutError):
        for _ in range(20):
            clock.advance(600)
            await app.afire_due_timers()
            await app.aresume("slow")
    rec = await app.aget_record("slow")
    assert rec.status is RunStatus.FAILED and rec.last_error is not None
    assert rec.last_error.type == "StageTimeoutError"
    assert "not ready after max_wait=600" in rec.last_error.message
    assert BATCHES["batch-2"]["cancelled"] is True
    assert BATCHES["batch-2"]["checks"] <= 3
    assert rec.stages[0].status == "failed" and "max_wait" in (rec.stages[0].error or "")


async def test_cancelling_a_suspended_run_stops_polling_and_cancels_the_batch(
    app: App, clock: FakeClock
) -> None:
    app.register(batch_pipeline)
    parked = await app.arun(batch_pipeline, Doc(url="u"), workflow_id="c1")
    assert parked.status is RunStatus.WAITING
    await app.acancel("c1", "no longer needed")
    assert BATCHES["batch-1"]["cancelled"] is True
    clock.advance(3600)
    assert await app.afire_due_timers() == []
    assert BATCHES["batch-1"]["checks"] == 1
    rec = await app.aget_record("c1")
    assert rec.status is RunStatus.CANCELLED and rec.stages[0].status == "cancelled"


async def test_the_check_runs_outside_any_database_transaction(
    sqlite_url: str, clock: FakeClock
) -> None:
    app = App(sqlite_url, clock=clock)
    app.register(batch_pipeline)
    BATCHES["batch-1"] = {}
    BATCHES["batch-1"]["db"] = None
    try:
        path = sqlite_url.removeprefix("sqlite:///")
        BATCHES.clear()
        original = embed_all.fn

        async def submit(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
            out = await original(ctx)
            BATCHES["batch-1"]["db"] = path
            BATCHES["batch-1"]["ready_after"] = 0
            return out

        embed_all.fn = submit
        result = await app.arun(batch_pipeline, Doc(url="u"))
        assert result.value == Answers(answers=["U"])
    finally:
        embed_all.fn = original
        await app.aclose()


async def test_a_submit_that_does_not_suspend_fails_clearly(app: App) -> None:
    @tether.batch_stage(id="oops", output=Answers, check=_check)
    async def oops(ctx: object) -> Any:
        return {"batch_id": "x"}

    with pytest.raises(tether.StageError, match=r"submit must return tether\.Suspend"):
        await app.arun(tether.Pipeline("oops").pipe(oops))


async def test_a_batch_stage_beside_a_normal_one_parks_the_group(
    app: App, clock: FakeClock
) -> None:
    class Length(BaseModel):
        n: int

    calls: list[str] = []

    @tether.stage(id="length", input=Doc, output=Length)
    async def length(ctx: tether.StageContext[Doc, None]) -> Length:
        return Length(n=await ctx.workflow.step("count", lambda: calls.append("count") or 1))

    p = tether.Pipeline("side-by-side", input=Doc).parallel([embed_all, length])
    app.register(p)
    parked = await app.arun(p, Doc(url="u"), workflow_id="g1")
    assert parked.status is RunStatus.WAITING
    assert {s.id: s.status for s in parked.record.stages} == {
        "embed-all": "suspended", "length": "completed"}  # fmt: skip
    for _ in range(2):
        clock.advance(60)
        await app.afire_due_timers()
        await app.aresume("g1")
    done = await app.aresult("g1", timeout=10)
    assert done.value == {"embed-all": {"answers": ["U"]}, "length": {"n": 1}}
    assert calls == ["count"]  # the finished stage beside it never ran again


async def test_each_check_asks_the_model_afresh_and_its_calls_count_for_the_stage(
    database_url: str, clock: FakeClock
) -> None:
    asked: list[str] = []

    def answer(model: str, request: object) -> str:
        asked.append(model)
        return "done" if len(asked) >= 3 else "pending"

    @tether.batch_stage(id="ask", input=Doc, output=Answers)
    async def ask(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
        return tether.Suspend({"job": 1}, poll_every=60)

    @ask.check
    async def _status(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
        said = (await ctx.ai.generate_text("fake:m", prompt="status?")).text
        return tether.Ready(Answers(answers=[said])) if said == "done" else tether.NotReady()

    prices = ai.Prices({"fake:m": {"input_per_million": 1, "output_per_million": 1}})
    app = App(database_url, clock=clock, ai=ai.Providers(fake=ai.FakeModel(answer), prices=prices))
    p = tether.Pipeline("asker", input=Doc, output=Answers).pipe(ask)
    app.register(p)
    try:
        await app.arun(p, Doc(url="u"), workflow_id="a1")
        for _ in range(2):  # before: every later check was answered the first "pending"
            clock.advance(60)
            await app.afire_due_timers()
            await app.aresume("a1")
        done = await app.aresult("a1", timeout=10)
        assert done.value == Answers(answers=["done"]) and len(asked) == 3
        keys = [c.step_key for c in await app.alist_ai_calls("a1")]
        assert keys == [f"ask/check#{k}/ai.text:fake:m" for k in (1, 2, 3)]
        [stage] = done.record.stages
        assert stage.usage is not None and stage.usage.calls == 3  # before: None
    finally:
        await app.aclose()


async def test_a_check_that_raises_says_the_batch_is_out_and_which_check_to_rerun(
    app: App, clock: FakeClock
) -> None:
    app.register(batch_pipeline)
    parked = await app.arun(batch_pipeline, Doc(url="u"), workflow_id="blip")
    assert parked.status is RunStatus.WAITING and BATCHES["batch-1"]["checks"] == 1
    BATCHES["batch-1"]["db"] = object()  # a bug: the next check raises a TypeError
    clock.advance(60)
    await app.afire_due_timers()
    with pytest.raises(tether.StageError) as raised:
        await app.aresume("blip")
    message = str(raised.value)
    assert "batch stage 'embed-all': its check #2 raised TypeError" in message
    assert "batch is still out (state {'batch_id': 'batch-1'})" in message
    assert "app.rerun_from('blip', 'stage:embed-all.check#2')" in message
    assert BATCHES["batch-1"]["cancelled"] is False
    rec = await app.aget_record("blip")
    assert rec.status is RunStatus.FAILED and "check #2 raised" in (rec.stages[0].error or "")

    del BATCHES["batch-1"]["db"]  # fixed: the advice asks the same batch again
    done = await app.arerun_from("blip", "stage:embed-all.check#2")
    assert done.value == Answers(answers=["U"])
    assert list(BATCHES) == ["batch-1"]  # not submitted again


class Vectors(BaseModel):
    vectors: list[list[float]]


@tether.batch_stage(id="embed-many", input=Doc, output=Vectors)
async def embed_many(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
    return tether.Suspend({"batch_id": "big-1"}, poll_every=60)


@embed_many.check
async def _big_ready(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
    BATCHES.setdefault("big-1", {"checks": 0})["checks"] += 1
    return tether.Ready(Vectors(vectors=[[0.25] * 64 for _ in range(100)]))


async def test_a_large_batch_output_goes_to_the_blob_store_not_the_checks_record(
    app: App,
) -> None:
    p = tether.Pipeline("big-batch", input=Doc, output=Vectors, inline_limit=4096)
    p = p.pipe(embed_many)
    app.register(p)
    done = await app.arun(p, Doc(url="u"), workflow_id="bb")
    assert done.status is RunStatus.COMPLETED and len(done.value.vectors) == 100
    steps = done.record.steps
    # before: the check's step held the whole output (here 26 KB; a batch's embeddings
    # run to megabytes), beside the blob, and every later drive of the run loaded it
    check = steps["stage:embed-many.check"].result
    assert check["output"] is None and check["blob"] == steps["stage:embed-many"].result["blob"]
    assert len(str(check)) < 1000
    again = await app.arun(p, workflow_id="bb")  # answered from the record and the blob
    assert again.value == done.value and BATCHES["big-1"]["checks"] == 1
    assert await app.blobs.list("runs/bb/") == ["runs/bb/stages/embed-many/1/output.json"]


async def test_each_calls_batch_is_cancelled_through_its_stages_on_cancel(
    database_url: str, clock: FakeClock
) -> None:
    """A pipeline called once per item from a workflow's code has a batch out per item;
    cancelling the run calls the stage's `on_cancel` for each (its stage was looked for
    in the run's own pipeline alone: the workflow is not one, so the cancel was refused
    with `BatchesOutError`, and `abandon_batches=True` left both batches running)."""
    async with App(database_url, clock=clock) as app:

        @app.workflow(name="batch-per-doc")
        async def per_doc(wf: tether.Workflow, urls: list[str]) -> list[str]:
            async def one(url: str) -> str:
                return (await batch_pipeline(wf, Doc(url=url))).answers[0]

            return list((await wf.for_each(urls, one, max_parallel=2)).values)  # type: ignore[arg-type]

        parked = await app.arun(per_doc, ["a", "b"], workflow_id="per-doc")
        assert parked.status is RunStatus.WAITING and len(BATCHES) == 2
        assert await app.acancel("per-doc") == ["per-doc"]
        assert [b["cancelled"] for b in BATCHES.values()] == [True, True]
        rec = await app.aget_record("per-doc")
        assert rec.status is RunStatus.CANCELLED
        # sorted: the items start in either order
        assert sorted((s.at, s.id, s.status) for s in rec.stages) == [
            ("[0]", "embed-all", "cancelled"), ("[1]", "embed-all", "cancelled")
        ]  # fmt: skip


UNKNOWN_HERE = """
import asyncio, sys
import tether
from pydantic import BaseModel

class Doc(BaseModel):
    url: str

@tether.batch_stage(id="far", input=Doc, output=Doc)
async def far(ctx):
    await ctx.workflow.step("submit", lambda: "b-1")
    return tether.Suspend({"batch_id": "b-1"}, poll_every=60, max_wait=600)

@far.check
async def _check(state, ctx):
    return tether.NotReady()

@far.on_cancel
async def _cancel(state):
    pass

elsewhere = tether.Pipeline("built-elsewhere", input=Doc, output=Doc).pipe(far)

async def main():
    async with tether.App(sys.argv[1]) as app:
        @app.workflow(name="far-per-doc")
        async def per_doc(wf, urls: list[str]) -> int:
            async def one(url: str) -> str:
                return (await elsewhere(wf, Doc(url=url))).url
            return len((await wf.for_each(urls, one, max_parallel=2)).values)
        print((await app.arun(per_doc, ["a", "b"], workflow_id="far")).status.value)

asyncio.run(main())
"""


async def test_each_calls_batch_is_named_when_a_cancel_cannot_reach_them(
    database_url: str, tmp_path: Path
) -> None:
    """A process that has not built the pipeline the run's code called (a bare
    `tether runs cancel`) cannot reach its batches: the cancel names each call's
    (the suspended stages were kept by stage id: two batches out read as one)."""
    script = tmp_path / "far.py"
    script.write_text(UNKNOWN_HERE)
    done = subprocess.run(
        [sys.executable, str(script), database_url], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "waiting", done.stderr
    async with App(database_url) as app:
        with pytest.raises(tether.BatchesOutError) as refused:
            await app.acancel("far")
        assert sorted(refused.value.batches) == ["batch stage '[0]far'", "batch stage '[1]far'"]
        assert (await app.aget_run("far")).status is RunStatus.WAITING


class Scored(BaseModel):  # Answers as a later release has it: a field added
    answers: list[str]
    scores: list[float]


def _scoring(out: type[BaseModel], ready: dict[str, Any]) -> tether.Pipeline[Doc, Any]:
    @tether.batch_stage(id="score", input=Doc, output=out)
    async def score(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
        def submit() -> str:
            BATCHES[f"batch-{len(BATCHES) + 1}"] = {"url": ctx.input.url}
            return f"batch-{len(BATCHES)}"

        return tether.Suspend({"batch_id": await ctx.workflow.step("submit", submit)})

    @score.check
    async def check(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
        return tether.Ready(ready)

    return tether.Pipeline("scoring", input=Doc).pipe(score)


async def test_a_ready_check_read_back_under_a_changed_output_model_says_so_and_how_to_go_on(
    database_url: str,
) -> None:
    """A drive that ended between a ready check and the stage's output step (a crash, a
    deploy) reads the check's record again, here by a rerun from that output step. With
    the output model changed since, it said the stage "returned a value that is not its
    output Scored", as if its code had just given it, and named no way on."""
    app, first = App(database_url), _scoring(Answers, {"answers": ["A"]})
    app.register(first)
    try:
        await app.arun(first, Doc(url="u"), workflow_id="sc")
    finally:
        await app.aclose()
    app = App(database_url)
    app.register(_scoring(Scored, {"answers": ["A"], "scores": [0.5]}))
    try:
        expected = (
            r"^batch stage 'score' of run 'sc' recorded its output in the record of its check "
            r"'stage:score\.check', as \{answers: list\}, which its output model Scored no "
            r"longer takes \(scores: Field required .*\): Scored changed since it was "
            r"recorded; keep the old model, or make Scored accept it .*, or have the check "
            r"build the new Scored; either way rerun from that check, which asks the same "
            r"batch again: app\.rerun_from\('sc', 'stage:score\.check'\) .* \(a rerun from "
            r"the stage submits a new batch: app\.rerun_from\('sc', 'score'\)"
        )
        with pytest.raises(tether.StageError, match=expected):
            await app.arerun_from("sc", "stage:score")
        # the way on it names: the same batch asked again, none submitted
        done = await app.arerun_from("sc", "stage:score.check")
        assert done.value == Scored(answers=["A"], scores=[0.5])
        assert list(BATCHES) == ["batch-1"]
    finally:
        await app.aclose()
