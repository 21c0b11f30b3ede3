"""`tether usage` and the usage line of `tether runs show`, from the AI call log."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from tether import App, Workflow, ai

from ._helpers import create, record_summaries, tether


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


def test_usage_sums_the_call_log_by_model_and_workflow(database_url: str) -> None:
    record_summaries(database_url, "u1", "u2")
    by_model = invoke(database_url, "usage", "--by", "model")
    assert by_model.exit_code == 0, by_model.output
    lines = by_model.output.splitlines()
    cheap = next(line for line in lines if "fake:cheap" in line)
    assert "0.004000" in cheap  # 2 x (1000 x $1 + 100 x $10) / 1M
    unpriced = [c.strip() for c in next(ln for ln in lines if "fake:unpriced" in ln).split("│")]
    assert unpriced[-3:-1] == ["unknown", "2"]  # two calls at no known price, never "$0"
    by_workflow = invoke(database_url, "usage", "--by", "workflow", "--workflow", "summarise")
    assert "summarise" in by_workflow.output and "4" in by_workflow.output
    shown = invoke(database_url, "runs", "show", "u1")
    assert "AI usage" in shown.output and "2 calls" in shown.output
    assert "1 at no known price" in shown.output
    nothing = invoke(database_url, "usage", "--workflow", "other")
    assert nothing.exit_code == 0 and "no AI calls" in nothing.output
    bad = invoke(database_url, "usage", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "cannot read" in bad.output


def test_a_run_whose_calls_had_no_known_price_shows_its_cost_as_unknown(
    database_url: str,
) -> None:
    app = App(database_url, ai=ai.Providers(fake=ai.FakeModel()))

    @app.workflow(name="unpriced")
    async def unpriced(wf: Workflow) -> str:
        await wf.ai.generate_text("fake:local-model", prompt="a")
        await wf.ai.generate_text("fake:local-model", prompt="b")
        return "done"

    app.run(unpriced, workflow_id="n1")
    app.close()
    shown = invoke(database_url, "runs", "show", "n1")
    assert shown.exit_code == 0, shown.output
    usage_line = next(line for line in shown.output.splitlines() if "AI usage" in line)
    assert "unknown" in usage_line and "$0" not in usage_line, usage_line
    assert "2 at no known price" in shown.output


def test_a_retried_call_at_no_known_price_is_still_unknown_not_zero(
    database_url: str,
) -> None:
    # the failed attempt is logged with no tokens and no price: it is no priced call
    busy = ai.ProviderError("busy", status=503, retryable=True, retry_after=0.01)
    app = App(database_url, ai=ai.Providers(fake=ai.FakeModel([busy, "ok"])))

    @app.workflow(name="retried")
    async def retried(wf: Workflow) -> str:
        return (await wf.ai.generate_text("fake:local-model", prompt="a")).text

    app.run(retried, workflow_id="r1")
    (total,) = app.usage(run="r1")
    app.close()
    assert (total.calls, total.unknown_cost_calls, total.priced_calls) == (2, 1, 0)
    assert total.known_cost_usd is None
    shown = invoke(database_url, "runs", "show", "r1")
    usage_line = next(line for line in shown.output.splitlines() if "AI usage" in line)
    assert "unknown" in usage_line and "$0" not in usage_line, usage_line
    by_model = invoke(database_url, "usage", "--by", "model")
    row = [
        c.strip()
        for c in next(ln for ln in by_model.output.splitlines() if "local" in ln).split("│")
    ]
    assert row[-3:-1] == ["unknown", "1"], row


def test_a_blank_time_is_refused_not_taken_for_no_filter(database_url: str) -> None:
    record_summaries(database_url, "u1")
    for option in ("--since", "--until"):
        blank = invoke(database_url, "usage", option, "")
        assert blank.exit_code == 2, blank.output
        assert f"{option}: cannot read '' as a time" in blank.output


def test_a_workflow_name_with_brackets_is_a_row_as_written(tmp_path: object) -> None:
    """`--by workflow` rows are names, not rich markup: `[/v2]` crashed the table."""
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url, ai=ai.Providers(fake=ai.FakeModel()))

    @app.workflow(name="summarise[/v2]")
    async def summarise(wf: Workflow) -> str:
        await wf.ai.generate_text("fake:local-model", prompt="a")
        return "done"

    app.run(summarise, workflow_id="b1")
    app.close()
    by_workflow = invoke(url, "usage", "--by", "workflow")
    assert by_workflow.exit_code == 0, by_workflow.output
    assert "summarise[/v2]" in by_workflow.output


def _column(output: str, index: int) -> str:
    """The text of one column of a table, its folded pieces joined."""
    return "".join(
        line.split("│")[index + 1].strip() for line in output.splitlines() if "│" in line
    )


def test_a_narrow_terminal_folds_names_and_costs_rather_than_cutting_them(
    tmp_path: Path,
) -> None:
    # on 80 columns the workflow "summarise" read "summari…", and on 60 a cost of
    # 0.002000 read "0.00…" (rich's default ellipsis)
    url = create(f"sqlite:///{tmp_path}/t.db")
    record_summaries(url, "u1")
    for width in ("60", "80"):
        by_workflow = tether(tmp_path, "usage", "--by", "workflow", env={"COLUMNS": width})
        assert by_workflow.returncode == 0, by_workflow.stderr
        assert "…" not in by_workflow.stdout, by_workflow.stdout
        assert _column(by_workflow.stdout, 0) == "summariseall", by_workflow.stdout
        assert _column(by_workflow.stdout, 6) == "0.0020000.002000", by_workflow.stdout
        by_model = tether(tmp_path, "usage", "--by", "model", env={"COLUMNS": width})
        assert _column(by_model.stdout, 0) == "fake:cheapfake:unpricedall", by_model.stdout
        assert _column(by_model.stdout, 6) == "0.002000unknown0.002000", by_model.stdout
        widest = max(len(line) for line in by_model.stdout.splitlines())
        assert widest <= int(width), by_model.stdout  # nothing cropped at the right edge


def test_a_failed_stage_shows_its_error_as_text_not_quoted_json(database_url: str) -> None:
    """The stage table printed the stage's error (text) through the JSON formatter:
    ``"ValueError: c broke"``, in quotes, where the step table shows it plain."""
    import pytest
    from pydantic import BaseModel

    import tether

    class Text(BaseModel):
        text: str

    @tether.stage(id="c", input=Text, output=Text)
    async def c(ctx: tether.StageContext[Text, None]) -> Text:
        raise ValueError("c broke")

    pipe = tether.Pipeline("p", input=Text, output=Text).pipe(c)

    async def flow(wf: Workflow) -> str:
        return (await pipe(wf, Text(text="x"))).text

    with App(database_url) as app, pytest.raises(ValueError, match="c broke"):
        app.run(flow, workflow_id="s1")
    shown = invoke(database_url, "runs", "show", "s1")
    line = next(ln for ln in shown.output.splitlines() if "c broke" in ln and "│ c " in ln)
    assert "ValueError: c broke" in line and '"ValueError' not in line
