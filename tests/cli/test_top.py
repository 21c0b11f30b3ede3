"""`tether top --once`: runs by status, busiest queues, the costliest unfinished runs."""

from __future__ import annotations

from pathlib import Path

import tether
from tether import App, ai

from ._helpers import tether as run_tether


def test_top_shows_counts_queues_and_the_costliest_open_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    model = ai.FakeModel(["thinking"], usage=ai.Usage(input_tokens=1000, output_tokens=100))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(url, ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="asks")
    async def asks(wf: tether.Workflow) -> object:
        await wf.ai.generate_text("demo:m", prompt="plan")
        return await wf.wait_for_signal("go")

    @app.workflow(name="later")
    async def later(wf: tether.Workflow) -> None:
        return None

    app.run(asks, workflow_id="costly-1")
    app.submit(later, queue="nightly")
    app.submit(later, queue="nightly")
    app.close()

    shown = run_tether(tmp_path, "top", "--once", db=url)
    assert shown.returncode == 0, shown.stderr
    assert "waiting 1" in shown.stdout and "pending 2" in shown.stdout
    assert "nightly" in shown.stdout and "│ 2 " in shown.stdout
    assert "costly-1" in shown.stdout and "$0.001200" in shown.stdout
    assert run_tether(tmp_path, "top", "--rows", "0", db=url).returncode == 2


def test_ids_and_names_are_shown_as_text_not_rich_markup(tmp_path: Path) -> None:
    # a run named "[/]costly" made `top` (and `runs watch` of it) crash with a MarkupError;
    # "[red]plain[/red]" was shown as "plain"
    url = f"sqlite:///{tmp_path}/t.db"
    model = ai.FakeModel(["x"], usage=ai.Usage(input_tokens=10, output_tokens=1))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(url, ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="[b]asks")
    async def asks(wf: tether.Workflow) -> object:
        await wf.step("[red]step[/red]", lambda: 1)
        await wf.ai.generate_text("demo:m", prompt="plan")
        return await wf.wait_for_signal("go")

    app.run(asks, workflow_id="[/]costly")
    app.submit(asks, queue="[i]queue", workflow_id="[red]plain[/red]")
    app.close()

    shown = run_tether(tmp_path, "top", "--once", db=url)
    assert shown.returncode == 0, shown.stderr
    assert "[/]costly" in shown.stdout and "[i]queue" in shown.stdout
    for wid in ("[/]costly", "[red]plain[/red]"):
        watched = run_tether(tmp_path, "runs", "watch", wid, "--once", db=url)
        assert watched.returncode == 0, watched.stderr
        assert wid in watched.stdout
    assert "[red]step[/red]" in run_tether(tmp_path, "runs", "watch", "[/]costly", "--once",
                                           db=url).stdout  # fmt: skip


def test_the_costliest_open_run_is_found_behind_hundreds_of_newer_ones(tmp_path: Path) -> None:
    # `top` read the newest 500 open runs of each status and the usage of every run
    # ever made: a costly run waiting behind 500 newer waiting runs was not shown
    url = f"sqlite:///{tmp_path}/t.db"
    model = ai.FakeModel(["x", "y"], usage=ai.Usage(input_tokens=1000, output_tokens=100))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(url, ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="asks")
    async def asks(wf: tether.Workflow, ask: bool) -> object:
        if ask:
            await wf.ai.generate_text("demo:m", prompt="plan")
        return await wf.wait_for_signal("go")

    app.run(asks, True, workflow_id="old-and-costly")
    app.run(asks, True, workflow_id="ended-and-costly")
    app.signal("ended-and-costly", "go", 1)
    app.run(asks, True, workflow_id="ended-and-costly")
    for i in range(501):
        app.run(asks, False, workflow_id=f"new-{i}")
    app.close()

    shown = run_tether(tmp_path, "top", "--once", db=url)
    assert shown.returncode == 0, shown.stderr
    assert "old-and-costly" in shown.stdout and "$0.001200" in shown.stdout
    assert "ended-and-costly" not in shown.stdout
