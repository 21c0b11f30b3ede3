"""`runs show`, `runs watch` and `top` on narrow terminals and into a pipe: every value
(ids, statuses, steps, waits, error text, times) whole in what they print, a long
error wrapped between words, the JSON the same at every width."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tether
from tether import App
from tether.cli._format import ts

from ._helpers import create
from ._helpers import tether as run_tether

FAILED = "order-2026-12-01-customer-8812-attempt-3"
WAITING = "approval-request-0a45c370c4ba-9f1e"
STEP = "charge-the-customers-credit-card"
WAIT = "signal:manager-approval-signal-key#1"
ERROR = (
    "RuntimeError: the payment provider refused the charge because the card expired "
    "and no backup card was on file for customer 8812"
)
WIDTHS = [30, 40, 60, 80, 200]


def _runs(url: str) -> dict[str, str]:
    """A failed run and a run waiting on a signal, of long ids and names; the times
    their steps completed, as the commands print them."""
    app = App(url)

    @app.workflow(name="order-fulfilment-pipeline")
    async def charge(wf: tether.Workflow) -> None:
        await wf.step(STEP, lambda: 1)
        raise RuntimeError(ERROR.removeprefix("RuntimeError: "))

    @app.workflow(name="waiting-for-approval-workflow")
    async def approve(wf: tether.Workflow) -> object:
        await wf.step("reserve-inventory-items", lambda: 1)
        return await wf.wait_for_signal("manager-approval-signal-key")

    with pytest.raises(RuntimeError):
        app.run(charge, workflow_id=FAILED)
    app.run(approve, workflow_id=WAITING)  # parks on its signal
    try:
        return {
            wid: ts(next(iter(app.get_record(wid).steps.values())).completed_at)
            for wid in (FAILED, WAITING)
        }
    finally:
        app.close()


@pytest.fixture
def made(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = create(f"sqlite:///{tmp_path}/t.db")
    return url, _runs(url)


def _flat(output: str) -> str:
    """What was printed, no whitespace, a table's columns one after the other: a value
    folded over lines (of a block or of a table's cell) reads whole again."""
    lines = output.splitlines()
    columns: dict[int, list[str]] = {}
    for line in lines:
        for i, piece in enumerate(line.split("│")[1:-1]):
            columns.setdefault(i, []).append(piece)
    rest = [line for line in lines if "│" not in line]
    return "".join("".join(rest + ["".join(c) for c in columns.values()]).split())


def _shown(tmp: Path, url: str, columns: int, *args: str) -> str:
    """What `tether ARGS` printed into a pipe on `columns` columns (exit 0), each line
    within them (but JSON's)."""
    done = run_tether(tmp, *args, db=url, env={"COLUMNS": str(columns)})
    assert done.returncode == 0, done.stderr
    if "--json" not in args:
        assert all(len(line) <= columns for line in done.stdout.splitlines()), done.stdout
    return done.stdout


@pytest.mark.parametrize("columns", WIDTHS)
def test_runs_show_keeps_every_value_whole(
    tmp_path: Path, made: tuple[str, dict[str, str]], columns: int
) -> None:
    # before, on 30 columns: "order-2026-12-01-…" and "order-fulfilment-…" (the rest of
    # the id and workflow name gone); on 40, "comp" "lete" "d" and the error four
    # letters a line in the tables
    url, completed = made
    shown = _shown(tmp_path, url, columns, "runs", "show", FAILED)
    assert "…" not in shown, shown
    flat = _flat(shown)
    for value in (FAILED, "order-fulfilment-pipeline", STEP, _flat(completed[FAILED])):
        assert value in flat, (value, shown)
    assert re.search(r"^status\W+failed\b", shown, re.M), shown
    assert re.search(r"\bcompleted\b", shown.split("steps (1)")[1]), shown  # the step's
    # the error in the summary and in the last event, wrapped between its words
    words = shown.split()
    assert all(words.count(w) >= 2 for w in ERROR.split()), shown
    assert flat.count(_flat(ERROR)) == 2, shown
    waiting = _shown(tmp_path, url, columns, "runs", "show", WAITING)
    assert "…" not in waiting and "waiting-for-approval-workflow" in _flat(waiting), waiting
    assert f"`tetherrunsresume{WAITING}--appFILE.py:app`" in _flat(waiting), waiting


@pytest.mark.parametrize("columns", WIDTHS)
def test_runs_watch_keeps_the_id_step_wait_and_time_whole(
    tmp_path: Path, made: tuple[str, dict[str, str]], columns: int
) -> None:
    # before, on 30 columns: "approval-request-0a4…", the steps table "res…", "com…",
    # "2026…" and "16:2…": rich's ellipsis in every column
    url, completed = made
    shown = _shown(tmp_path, url, columns, "runs", "watch", WAITING, "--once")
    frame = shown.split("  3 step.completed")[0]  # the latest events: a line each, cut
    assert "…" not in frame, shown
    flat = _flat(frame)
    for value in (WAITING, "waiting-for-approval-workflow", "reserve-inventory-items", WAIT):
        assert value in flat, (value, shown)
    assert _flat(completed[WAITING]) in flat, shown
    assert re.search(r"^status\W+waiting\b", frame, re.M), shown
    assert re.search(r"\bcompleted\b", frame.split("steps (last")[1]), shown


@pytest.mark.parametrize("columns", WIDTHS)
def test_runs_watch_shows_the_last_error_as_text_wrapped_between_words(
    tmp_path: Path, made: tuple[str, dict[str, str]], columns: int
) -> None:
    # before: the message alone, as quoted JSON ("the payment ...", no RuntimeError),
    # and the id cut by an ellipsis on 30 and 40 columns
    url, _ = made
    done = run_tether(tmp_path, "runs", "watch", FAILED, "--once", db=url,
                      env={"COLUMNS": str(columns)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = done.stdout.split("steps (last")[0]
    assert "…" not in frame and '"' not in frame, done.stdout
    assert FAILED in _flat(frame), done.stdout
    assert _flat(ERROR) in _flat(frame), done.stdout
    assert set(ERROR.split()) <= set(frame.split()), done.stdout  # no word broken


def test_top_keeps_each_status_beside_its_count(
    tmp_path: Path, made: tuple[str, dict[str, str]]
) -> None:
    # before, on 30 columns: "... completed 0  failed" and "1  cancelled 0" on the next
    url, _ = made
    for columns in WIDTHS:
        shown = _shown(tmp_path, url, columns, "top", "--once")
        assert re.search(r"\bfailed 1\b", shown), shown
        assert re.search(r"\bwaiting 1\b", shown), shown
        assert re.search(r"\bcompensation_failed 0\b", shown), shown
        # before, on 30 columns, its tables' headers: "queu" "e", "wait" "ing"
        assert {"queu", "e", "ing"}.isdisjoint(shown.split()), shown


def test_runs_show_json_is_the_same_at_every_width(
    tmp_path: Path, made: tuple[str, dict[str, str]]
) -> None:
    url, _ = made
    printed = {
        _shown(tmp_path, url, columns, "runs", "show", FAILED, "--json") for columns in WIDTHS
    }
    assert len(printed) == 1 and ERROR.removeprefix("RuntimeError: ") in printed.pop()


@pytest.mark.parametrize("args", [("runs", "show"), ("runs", "watch")])
def test_an_unknown_run_or_a_missing_database_is_one_line_and_its_exit_code(
    tmp_path: Path, made: tuple[str, dict[str, str]], args: tuple[str, ...]
) -> None:
    url, _ = made
    unknown = run_tether(tmp_path, *args, "nope", db=url, env={"COLUMNS": "30"})
    assert unknown.returncode == 3, unknown.stderr
    assert unknown.stderr.startswith("error: no run with workflow id 'nope'"), unknown.stderr
    missing = tmp_path / "missing.db"
    gone = run_tether(tmp_path, *args, "nope", db=f"sqlite:///{missing}", env={"COLUMNS": "30"})
    assert gone.returncode == 4, gone.stderr
    assert gone.stderr.startswith(f"error: no tether database at {missing}"), gone.stderr
    assert "Traceback" not in gone.stderr and not missing.exists()
