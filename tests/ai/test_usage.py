"""The call log read back as a user reads it: usage per stage, per group and filter."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunRecord, Workflow, ai

MODEL = "demo:small"
USAGE = ai.Usage(input_tokens=1000, output_tokens=100)  # 1,200 micro-USD at PRICES
PRICES = ai.Prices({MODEL: {"input_per_million": 1.0, "output_per_million": 2.0}})


class Note(BaseModel):
    text: str


def _app(database_url: str) -> App:
    model = ai.FakeModel(usage=USAGE)
    return App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, prices=PRICES))


@tether.stage(id="summarize", input=Note, output=Note)
async def summarize(ctx: tether.StageContext[Note, None]) -> Note:
    async def label() -> str:  # a step of the stage's own: named summarize/label
        return (await ctx.workflow.ai.generate_text(MODEL, prompt="label")).text

    said = await ctx.workflow.step("label", label)
    reply = await ctx.ai.generate_text(MODEL, prompt=ctx.input.text)
    return Note(text=said + reply.text)


PIPELINE = tether.Pipeline("notes", input=Note, output=Note).pipe(summarize)


async def _by_stage(app: App, wid: str) -> dict[str | None, int]:
    rows = await app.store.ai_usage(workflow_ids=[wid], group_by="stage")
    return {r.group: r.calls for r in rows}


async def test_a_plain_steps_calls_are_no_stages_usage(database_url: str) -> None:
    """A plain step's calls are named under it (``triage/ai.text:...``) as a stage's are
    under the stage: they grouped as a stage 'triage' that the run does not have."""
    app = _app(database_url)

    @app.workflow(name="triaged")
    async def triaged(wf: Workflow, text: str) -> str:
        async def triage() -> str:
            return (await wf.ai.generate_text(MODEL, prompt=text)).text

        first = await wf.step("triage", triage)
        return first + (await PIPELINE(wf, Note(text=text))).text

    try:
        done = await app.arun(triaged, "a note", workflow_id="t1")
        keys = sorted(c.step_key for c in await app.alist_ai_calls("t1"))
        assert keys[-1].startswith("triage/") and keys[0].startswith("summarize/")
        assert await _by_stage(app, "t1") == {None: 1, "summarize": 2}
        [stage] = done.record.stages
        assert stage.id == "summarize" and stage.usage is not None and stage.usage.calls == 2
    finally:
        await app.aclose()


async def test_the_usage_per_stage_adds_up_to_the_runs_after_a_rerun(database_url: str) -> None:
    """The calls of an attempt a rerun forgot count for no stage (the stage's usage is
    its current attempt's) but still for the run, under no stage: they were left out."""
    app = _app(database_url)
    app.register(PIPELINE)
    try:
        await app.arun(PIPELINE, Note(text="n"), workflow_id="r1")
        again = await app.arerun_from("r1", "summarize")
        assert await _by_stage(app, "r1") == {None: 2, "summarize": 2}
        [stage] = again.record.stages
        assert stage.attempt == 2 and stage.usage is not None and stage.usage.calls == 2
        [total] = await app.ausage(run="r1")
        assert total.calls == 4 and total.cost_micro_usd == 4 * 1200
    finally:
        await app.aclose()


async def test_app_usage_groups_by_stage(database_url: str) -> None:
    """`app.usage(group_by="stage")`: the store has the group, and the App refused it
    (InvalidArgumentError) though `record.stages` shows the same sums. Waits for the
    lead's change to `App.ausage` (src/tether/app.py): fails until it is applied."""
    app = _app(database_url)
    app.register(PIPELINE)
    try:
        await app.arun(PIPELINE, Note(text="n"), workflow_id="s1")
        rows = await app.ausage(run="s1", group_by="stage")
        assert [(r.group, r.calls, r.cost_micro_usd) for r in rows] == [("summarize", 2, 2400)]
    finally:
        await app.aclose()


async def test_each_pipeline_calls_stage_counts_its_own_calls(database_url: str) -> None:
    """A pipeline called twice and once per item: each call's stage row counts the calls
    of that call (the usage per stage read the first part of a step's name: the calls
    of ``pipeline#2/summarize/...`` and of each item counted for no stage, or for
    another call's). Needs the lead's change (`_stage_record.stage_usage`, read by
    `load_history`): fails until it is applied."""
    app = _app(database_url)

    @app.workflow(name="notes-again")
    async def again(wf: Workflow) -> list[str]:
        first = await PIPELINE(wf, Note(text="one"))
        second = await PIPELINE(wf, Note(text="two"))

        async def item(text: str) -> str:
            return (await PIPELINE(wf, Note(text=text))).text

        items = await wf.for_each(["x", "y"], item, max_parallel=2)
        return [first.text, second.text, *items.values]  # type: ignore[list-item]

    try:
        done = await app.arun(again, workflow_id="n1")
        rows = [(s.at, s.id, s.usage and s.usage.calls) for s in done.record.stages]
        # (places in the order first called: the two items' in either order, run at once)
        assert rows[:2] == [("", "summarize", 2), ("pipeline#2/", "summarize", 2)]
        assert sorted(rows[2:]) == [("[0]", "summarize", 2), ("[1]", "summarize", 2)]
    finally:
        await app.aclose()


# -- across runs, as each run's record counts: wherever a pipeline is called ------------


@tether.stage(id="outer", input=Note, output=Note)
async def outer(ctx: tether.StageContext[Note, None]) -> Note:
    """One call of its own and a pipeline called inside it (two calls in `summarize`)."""
    await ctx.ai.generate_text(MODEL, prompt="outer")
    return await PIPELINE(ctx.workflow, ctx.input)


OUTER = tether.Pipeline("outer-notes", input=Note, output=Note).pipe(outer)


def _from_record(record: RunRecord) -> Counter[str]:
    """A run's calls per stage id, as its record counts them."""
    found: Counter[str] = Counter()
    for s in record.stages:
        found[s.id] += s.usage.calls if s.usage else 0
    return found


async def _grouped(app: App, **filters: object) -> dict[str | None, int]:
    return {r.group: r.calls for r in await app.ausage(group_by="stage", **filters)}  # type: ignore[arg-type]


async def test_a_pipeline_called_from_workflow_code_counts_for_its_stages(
    database_url: str,
) -> None:
    """Before: the calls of every call but the first from the top (``pipeline#2/``,
    ``process/``, ``[0]``) and those of the pipeline inside `outer` grouped under None."""
    app = _app(database_url)

    @app.workflow(name="mixed")
    async def mixed(wf: Workflow) -> int:
        await PIPELINE(wf, Note(text="one"))  # the first call from the top
        await PIPELINE(wf, Note(text="two"))  # pipeline#2/
        await wf.step("process", lambda: PIPELINE(wf, Note(text="three")))  # process/

        async def item(text: str) -> str:
            return (await PIPELINE(wf, Note(text=text))).text

        await wf.for_each(["x", "y"], item, max_parallel=2)  # [0], [1]
        # outer's own call, and summarize's two inside it
        await wf.step("nest", lambda: OUTER(wf, Note(text="four")))

        async def triage() -> str:  # a plain step: no stage
            return (await wf.ai.generate_text(MODEL, prompt="triage")).text

        await wf.step("triage", triage)
        return 0

    try:
        done = await app.arun(mixed, workflow_id="m1")
        assert _from_record(done.record) == {"summarize": 12, "outer": 3}
        assert done.record.usage is not None and done.record.usage.total.calls == 14
        by_stage = await _grouped(app, run="m1")
        # the call of `outer` inside it counts for both stages, as the record counts it
        assert by_stage == {"summarize": 12, "outer": 3, None: 1}
        rows = {r.group: r for r in await app.ausage(group_by="stage", run="m1")}
        assert rows["outer"].cost_micro_usd == 3 * 1200
        assert rows["summarize"].input_tokens == 12 * 1000
    finally:
        await app.aclose()


async def test_two_pipelines_called_in_turn_from_the_top_keep_each_its_stages(
    database_url: str,
) -> None:
    """Two different pipelines called one after the other from the workflow's code
    share the place (the top): keyed by the place alone, the second's plan hid the
    first's stages, in the record (no `summarize` row) and across runs (its calls
    grouped under None)."""
    app = _app(database_url)

    @app.workflow(name="turns")
    async def turns(wf: Workflow) -> int:
        await PIPELINE(wf, Note(text="one"))
        await OUTER(wf, Note(text="two"))  # summarize again inside outer
        return 0

    try:
        done = await app.arun(turns, workflow_id="t1")
        rows = [(s.at, s.id) for s in done.record.stages]
        assert rows == [("", "summarize"), ("", "outer"), ("outer/", "summarize")]
        assert _from_record(done.record) == {"summarize": 4, "outer": 3}
        assert await _grouped(app, run="t1") == {"summarize": 4, "outer": 3}
    finally:
        await app.aclose()


async def test_the_usage_by_stage_of_many_runs_is_their_records_summed(
    database_url: str,
) -> None:
    """Pipeline runs, runs that call pipelines and plain runs together; a rerun from inside
    a stage keeps the stage's earlier attempt, one from the stage forgets it (its calls
    then group under None), and a filter reads only the runs it names."""
    app = _app(database_url)
    app.register(PIPELINE)

    @app.workflow(name="twice")
    async def twice(wf: Workflow) -> str:
        await PIPELINE(wf, Note(text="a"))
        return (await wf.step("process", lambda: PIPELINE(wf, Note(text="b")))).text

    @app.workflow(name="plain")
    async def plain(wf: Workflow) -> str:
        return (await wf.ai.generate_text(MODEL, prompt="p")).text

    try:
        records = [(await app.arun(PIPELINE, Note(text="n"), workflow_id="p1")).record]
        await app.arun(PIPELINE, Note(text="n"), workflow_id="p2")
        records.append((await app.arerun_from("p2", "summarize")).record)  # forgets 2 calls
        await app.arun(PIPELINE, Note(text="n"), workflow_id="p3")
        inside = await app.arerun_from("p3", "summarize/ai.text:demo:small")
        records.append(inside.record)  # keeps the stage's start: 3 calls for it
        records.append((await app.arun(twice, workflow_id="w1")).record)
        records.append((await app.arun(plain, workflow_id="x1")).record)
        summed = sum((_from_record(r) for r in records), Counter())
        assert summed == {"summarize": 2 + 2 + 3 + 4}
        assert await _grouped(app) == {"summarize": 11, None: 2 + 1}  # p2's forgotten, x1's
        assert await _grouped(app, workflow="twice") == {"summarize": 4}
        assert await _grouped(app, run="p2") == {"summarize": 2, None: 2}
        assert await _grouped(app, workflow="plain") == {None: 1}
        assert await _grouped(app, workflow="nothing-like-it") == {}
        [total] = await app.ausage()
        assert total.calls == 11 + 3
    finally:
        await app.aclose()
