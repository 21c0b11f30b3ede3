"""`runs show` of a parked run: what it waits for (the wait, its kind, since when, when
it times out) and the command that answers it, in the table and in --json; a run
that waits for nothing shows no such section."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import tether
from tether import App
from tether.cli._format import ts

from ._helpers import create
from .test_narrow_show_watch import WIDTHS, _flat, _shown

SIGNALLED = "approval-request-7"
EVENTED = "order-watcher-9"
PARENT = "batch-parent-1"
CHILD = "batch-child-1"
DONE = "already-answered-3"


def _runs(url: str) -> dict[str, tether.WaitInfo]:
    """Runs parked on a signal (with a timeout), an event (with a match) and a child
    run, and one whose signal came: the open wait of each parked run."""
    app = App(url)

    @app.workflow(name="approve")
    async def approve(wf: tether.Workflow) -> object:
        await wf.step("reserve", lambda: 1)
        return await wf.wait_for_signal("go", timeout=timedelta(hours=2))

    @app.workflow(name="watch-orders")
    async def watch(wf: tether.Workflow) -> object:
        return await wf.wait_for_event("order.paid", match={"order": 7})

    @app.workflow(name="batch")
    async def batch(wf: tether.Workflow) -> object:
        return await wf.child(approve, workflow_id=CHILD)

    for fn, wid in ((approve, SIGNALLED), (watch, EVENTED), (batch, PARENT), (approve, DONE)):
        app.run(fn, workflow_id=wid)
    app.signal(DONE, "go", {"ok": True})
    app.resume(DONE)
    try:
        assert app.get_run(DONE).status is tether.RunStatus.COMPLETED
        return {wid: app.list_waits(wid)[0] for wid in (SIGNALLED, EVENTED, PARENT)}
    finally:
        app.close()


@pytest.fixture
def made(tmp_path: Path) -> tuple[str, dict[str, tether.WaitInfo]]:
    url = create(f"sqlite:///{tmp_path}/t.db")
    return url, _runs(url)


@pytest.mark.parametrize("columns", WIDTHS)
def test_a_signal_wait_shows_its_times_and_the_command_that_answers_it(
    tmp_path: Path, made: tuple[str, dict[str, tether.WaitInfo]], columns: int
) -> None:
    # before: the summary, steps and events only; nothing said the run waited for "go"
    url, waits = made
    wait = waits[SIGNALLED]
    assert wait.due_at is not None  # the timeout's time, shown below
    shown = _shown(tmp_path, url, columns, "runs", "show", SIGNALLED)
    assert "…" not in shown and "open waits (1)" in shown, shown
    section = _flat(shown.split("open waits (1)")[1].split("steps (1)")[0])
    for value in ("signal:go#1", "signal", ts(wait.created_at), ts(wait.due_at)):
        assert _flat(value) in section, (value, shown)
    assert f"tetherrunssignal{SIGNALLED}go--db{url}--payloadJSON" in section, shown


@pytest.mark.parametrize(
    ("wid", "wanted"),
    [  # an event's match; a child run's id and the command that follows it
        (EVENTED, ['event:order.paid#1 matching {"order": 7}', "event",
                   "tether runs event order.paid --db {url} --payload JSON"]),
        (PARENT, [f"child:{CHILD}", "child run", "tether runs show " + CHILD + " --db {url}"]),
    ],
)  # fmt: skip
def test_an_event_and_a_child_run_wait_show_what_answers_them(
    tmp_path: Path, made: tuple[str, dict[str, tether.WaitInfo]], wid: str, wanted: list[str]
) -> None:
    url, waits = made
    shown = _shown(tmp_path, url, 80, "runs", "show", wid)
    section = _flat(shown.split("open waits (1)")[1])
    for value in [*wanted, ts(waits[wid].created_at)]:
        assert _flat(value.replace("{url}", url)) in section, (value, shown)


def test_the_json_adds_the_open_waits_and_keeps_the_record_keys(
    tmp_path: Path, made: tuple[str, dict[str, tether.WaitInfo]]
) -> None:
    url, waits = made
    data = json.loads(_shown(tmp_path, url, 80, "runs", "show", EVENTED, "--json"))
    app = App(url)
    try:
        record_keys = list(app.get_record(EVENTED).to_dict())
    finally:
        app.close()
    assert list(data) == [*record_keys, "ownerGone", "ownerGoneSince", "openWaits"]
    wait = waits[EVENTED]
    assert data["openWaits"] == [
        {
            "id": wait.id,
            "key": "event:order.paid#1",
            "kind": "event",
            "name": "order.paid",
            "match": {"order": 7},
            "createdAt": wait.created_at.isoformat().replace("+00:00", "Z"),
            "dueAt": None,
            "answer": f"tether runs event order.paid --db {url}",
        }
    ]
    signalled = json.loads(_shown(tmp_path, url, 80, "runs", "show", SIGNALLED, "--json"))
    [open_wait] = signalled["openWaits"]
    assert open_wait["kind"] == "signal" and open_wait["dueAt"].endswith("Z")
    assert open_wait["answer"] == f"tether runs signal {SIGNALLED} go --db {url}"


def test_a_run_with_no_open_wait_shows_no_section(
    tmp_path: Path, made: tuple[str, dict[str, tether.WaitInfo]]
) -> None:
    # its signal came: the wait is resolved, and the run completed
    url, _ = made
    shown = _shown(tmp_path, url, 80, "runs", "show", DONE)
    assert "open waits" not in shown and "steps (1)" in shown, shown
    data = json.loads(_shown(tmp_path, url, 80, "runs", "show", DONE, "--json"))
    assert data["openWaits"] == [] and data["status"] == "completed"
