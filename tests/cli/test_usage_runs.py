"""`tether usage --by run|stage` and `--run ID [--children]`: what `App.usage` groups
and filters by, from the command line (the CLI offered model, workflow and day only)."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from pydantic import BaseModel

import tether
from tether import App, Workflow, ai

_PRICES = ai.Prices({"fake:cheap": {"input_per_million": 1.0, "output_per_million": 10.0}})


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


class Text(BaseModel):
    text: str


def _record(url: str) -> None:
    """Run "p1": two calls in stage "extract", one outside any stage, one in child
    "k1"; run "other": one call."""

    @tether.stage(id="extract", input=Text, output=Text)
    async def extract(ctx: tether.StageContext[Text, None]) -> Text:
        await ctx.ai.generate_text("fake:cheap", prompt="a")
        await ctx.ai.generate_text("fake:cheap", prompt="b")
        return ctx.input

    pipe = tether.Pipeline("p", input=Text, output=Text).pipe(extract)
    fake = ai.FakeModel(usage=ai.Usage(input_tokens=1000, output_tokens=100))
    with App(url, ai=ai.Providers(fake=fake, prices=_PRICES)) as app:

        @app.workflow(name="kid")
        async def kid(wf: Workflow) -> str:
            return (await wf.ai.generate_text("fake:cheap", prompt="k")).text

        @app.workflow(name="flow")
        async def flow(wf: Workflow) -> str:
            await wf.ai.generate_text("fake:cheap", prompt="outside")
            await wf.child(kid, workflow_id="k1")
            return str((await pipe(wf, Text(text="x"))).text)

        app.run(flow, workflow_id="p1")
        app.run(kid, workflow_id="other")


def _rows(result: Result) -> dict[str | None, int]:
    assert result.exit_code == 0, result.output
    return {r["group"]: r["calls"] for r in json.loads(result.output)["rows"]}


def test_usage_groups_by_run_and_by_stage_as_the_api_does(database_url: str) -> None:
    _record(database_url)
    by_run = invoke(database_url, "usage", "--by", "run", "--json")
    assert _rows(by_run) == {"p1": 3, "k1": 1, "other": 1}
    by_stage = invoke(database_url, "usage", "--by", "stage", "--run", "p1", "--json")
    assert _rows(by_stage) == {"extract": 2, None: 1}
    table = invoke(database_url, "usage", "--by", "stage", "--run", "p1")
    assert table.exit_code == 0, table.output
    cells = {ln.split("│")[1].strip(): ln for ln in table.output.splitlines() if "│" in ln}
    # the calls outside any stage are a row of their own, not a second "all"
    assert "(no stage)" in cells and "extract" in cells and "all" in cells, table.output
    assert cells["all"].split("│")[2].strip() == "3", table.output


def test_usage_of_one_run_with_or_without_its_children(database_url: str) -> None:
    _record(database_url)
    own = json.loads(invoke(database_url, "usage", "--run", "p1", "--json").output)
    assert own["total"]["calls"] == 3
    family = invoke(database_url, "usage", "--run", "p1", "--children", "--by", "run", "--json")
    assert _rows(family) == {"p1": 3, "k1": 1}
    shown = invoke(database_url, "usage", "--run", "other")
    assert shown.exit_code == 0 and "fake:cheap" in shown.output, shown.output


def test_bad_run_filters_are_refused_saying_what_to_do(database_url: str) -> None:
    _record(database_url)
    missing = invoke(database_url, "usage", "--run", "nope")
    assert missing.exit_code == 3 and "nope" in missing.output, missing.output
    blank = invoke(database_url, "usage", "--run", " ")
    assert blank.exit_code == 2 and "--run must not be blank" in blank.output, blank.output
    # children without a run summed every run's calls, the flag silently ignored
    orphan = invoke(database_url, "usage", "--children")
    assert orphan.exit_code == 2 and "--run ID" in orphan.output, orphan.output
    bad = invoke(database_url, "usage", "--by", "tenant")
    assert bad.exit_code == 2 and "'run', 'stage'" in bad.output, bad.output
