"""`runs show` of a parked run: what it waits for (the wait, its kind, since when, when
it times out) and the command that answers it, in the table and in --json; a run
that waits for nothing shows no such section."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import tether
from tether import App
from tether.cli._format import ts

from ..server._serve import start
from ._helpers import create
from .test_narrow_show_watch import WIDTHS, _flat, _shown

SIGNALLED = "approval-request-7"
EVENTED = "order-watcher-9"
PARENT = "batch-parent-1"
CHILD = "batch-child-1"
DONE = "already-answered-3"
TOKENED = "vendor-callback-5"


def _runs(url: str) -> dict[str, tether.WaitInfo]:
    """Runs parked on a signal (with a timeout), an event (with a match), a child run
    and a token, and one whose signal came: the open wait of each parked run."""
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

    @app.workflow(name="callback")
    async def callback(wf: tether.Workflow) -> object:
        return await wf.wait_for_token(await wf.create_token())

    parked = ((approve, SIGNALLED), (watch, EVENTED), (batch, PARENT), (callback, TOKENED))
    for fn, wid in (*parked, (approve, DONE)):
        app.run(fn, workflow_id=wid)
    app.signal(DONE, "go", {"ok": True})
    app.resume(DONE)
    try:
        assert app.get_run(DONE).status is tether.RunStatus.COMPLETED
        return {wid: app.list_waits(wid)[0] for _, wid in parked}
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


@pytest.fixture
def served(
    tmp_path: Path, made: tuple[str, dict[str, tether.WaitInfo]]
) -> Iterator[tuple[str, str]]:
    """The parked runs' database served by `tether serve` (no --app: nothing drives
    them) and its URL."""
    url, _ = made
    server = start(tmp_path, url, flows=None)
    try:
        yield url, server.url
    finally:
        server.stop()


def _requested(answer: str, payload: object) -> httpx.Response:
    """`answer`, an HTTP request as `runs show --server --json` gives it ("POST URL
    {...}"), sent with `payload` added to its body."""
    method, url, body = answer.split(" ", 2)
    return httpx.request(method, url, json=json.loads(body) | {"payload": payload}, timeout=30)


def test_a_served_runs_json_has_its_open_waits_answered_by_requests_that_work(
    tmp_path: Path, served: tuple[str, str], made: tuple[str, dict[str, tether.WaitInfo]]
) -> None:
    # before: no openWaits key at all from --server (the waits were not asked)
    url, server = served
    waits = made[1]
    answers = {
        SIGNALLED: f'POST {server}/api/v1/runs/{SIGNALLED}/signal {{"name": "go"}}',
        EVENTED: f'POST {server}/api/v1/events {{"type": "order.paid"}}',
        TOKENED: f"POST {server}/api/v1/wait-tokens/{waits[TOKENED].id}/complete {{}}",
        PARENT: None,  # it ends with its child
    }
    for wid, answer in answers.items():
        here = json.loads(_shown(tmp_path, url, 80, "runs", "show", wid, "--json"))
        there = json.loads(
            _shown(tmp_path, url, 80, "runs", "show", wid, "--json", "--server", server)
        )
        assert [w.pop("answer") for w in there["openWaits"]] == [answer], there
        [command] = [w.pop("answer") for w in here["openWaits"]]
        assert (command is None) is (answer is None), command  # the database's: a command
        assert there["openWaits"] == here["openWaits"], (here, there)  # the match too
        if answer is not None:
            assert _requested(answer, {"order": 7}).status_code == 200  # the event matches
            after = _shown(tmp_path, url, 80, "runs", "show", wid, "--json", "--server", server)
            assert json.loads(after)["openWaits"] == [], after  # answered: it waits no more


@pytest.mark.parametrize("columns", [40, 200])
def test_a_served_runs_table_shows_the_requests_and_says_why_not_a_command(
    tmp_path: Path, served: tuple[str, str], columns: int
) -> None:
    url, server = served
    shown = _shown(tmp_path, url, columns, "runs", "show", EVENTED, "--server", server)
    assert "open waits (1)" in shown, shown
    section = _flat(shown.split("open waits (1)")[1].split("steps (0)")[0])
    request = f'POST {server}/api/v1/events {{"type": "order.paid", "payload": JSON}}'
    for value in ['event:order.paid#1 matching {"order":7}', request, "take --db, not --server"]:
        assert _flat(value) in section, (value, shown)
    assert "tether runs event" + "order.paid" not in section.replace("`", "")
    parent = _shown(tmp_path, url, columns, "runs", "show", PARENT, "--server", server)
    section = _flat(parent.split("open waits (1)")[1])
    assert _flat(f"tether runs show {CHILD} --server {server}") in section, parent
    assert "not--server" not in section  # no request to send: nothing to say of them
