"""`tether agents run --port`: Symphony's status API (state, one issue, refresh) beside
tether's API and dashboard, served by a real dispatcher process; and `refresh`, which
makes a serving dispatcher tick now instead of at its next interval."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually, eventually_sync

from ._procs import of, project, start, stop

TIMEOUT = 90.0


def _http(method: str, url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            status = resp.status
            kind = resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        body, status, kind = exc.read(), exc.code, exc.headers.get("content-type", "")
    return status, json.loads(body) if "json" in kind else body.decode()


def _address(out: Path) -> str | None:
    found = re.search(r"status API: (http://127\.0\.0\.1:\d+)/api/v1/state", out.read_text())
    return found.group(1) if found else None


@pytest.mark.timeout(240)
def test_a_dispatcher_serves_its_state_issues_and_refresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    # server.port of WORKFLOW.md (the port-in-use test below passes --port)
    where = project(tmp_path, ["S-1", "S-2"], database_url=url, extra="server: {port: 0}")
    (where / "block-S-2").touch()  # S-2's agent keeps working: a running issue
    proc = start(where, "web")
    try:
        base = eventually_sync(lambda: _address(where / "web.out"), timeout=TIMEOUT)
        eventually_sync(
            lambda: of(where, "S-1", "end") and of(where, "S-2", "start"), timeout=TIMEOUT
        )

        def s1_done() -> dict[str, Any]:
            status, body = _http("GET", f"{base}/api/v1/S-1")
            assert status == 200 and body["run_status"] == "completed", body
            return dict(body)

        s1 = eventually_sync(s1_done, timeout=TIMEOUT)
        assert s1["run_id"] == "agent:file:S-1" and s1["tokens"]["total_tokens"] == 11
        assert any(e["type"] == "workflow.completed" for e in s1["recent_events"])

        status, state = _http("GET", f"{base}/api/v1/state")
        assert status == 200 and state["counts"]["running"] == 1
        [running] = state["running"]
        assert running["issue_identifier"] == "S-2" and running["phase"] == "running"
        assert running["workspace"].endswith("/ws/S-2")

        status, body = _http("GET", f"{base}/api/v1/NOPE-9")
        assert status == 404 and body["error"]["code"] == "issue_not_found"
        status, body = _http("POST", f"{base}/api/v1/refresh")
        assert status == 202 and body["queued"] is True
        assert body["operations"] == ["poll", "reconcile"]
        assert _http("PUT", f"{base}/api/v1/state")[0] == 405
        # tether's own API and the dashboard are there too, not shadowed by <identifier>
        status, page = _http("GET", f"{base}/api/v1/runs")
        assert status == 200 and "agent:file:S-1" in {r["workflow_id"] for r in page["runs"]}
        status, html = _http("GET", f"{base}/agents")
        assert status == 200 and "S-2" in html
    finally:
        (where / "block-S-2").unlink()
        stop(proc)
    assert proc.returncode == 0


def test_a_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    where = project(tmp_path, ["P-1"], database_url=f"sqlite:///{tmp_path}/t.db")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tether"), "agents", "run", "--port", port],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not of(where, "P-1", "start")  # nothing was dispatched


async def test_refresh_makes_a_serving_dispatcher_tick_now(tmp_path: Path) -> None:
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
polling: {{interval_ms: 3600000}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}""",
        path=tmp_path / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="1", identifier="R-1", title="one", state="todo")])
    backend = MockBackend([{}] * 4)
    async with tether.App(f"sqlite:///{tmp_path}/t.db") as app:
        d = Dispatcher(app, config, tracker=tracker, backend=backend)
        stop = asyncio.Event()
        serving = asyncio.ensure_future(d.serve(stop=stop))
        try:
            await eventually(lambda: tracker.issues["1"].state == "review", timeout=30)
            tracker.issues["2"] = Issue(id="2", identifier="R-2", title="two", state="todo")
            first, second = d.refresh(), d.refresh()
            assert first["coalesced"] is False and second["coalesced"] is True
            # the next interval is an hour away: only the refresh can dispatch R-2
            await eventually(lambda: tracker.issues["2"].state == "review", timeout=30)
            assert d.refresh()["coalesced"] is False  # the tick took the earlier ones
        finally:
            stop.set()
            await serving


async def test_an_error_that_lasts_is_logged_once_not_at_every_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken WORKFLOW.md (refused once, in its own line) also logged "tick: no new
    dispatch until it is fixed" at every tick, for as long as it stayed broken."""
    from tether.agents import WorkflowWatcher

    path = tmp_path / "WORKFLOW.md"
    text = f"""---
tracker: {{kind: memory, active_states: [todo]}}
polling: {{interval_ms: 3600000}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: mock, max_turns: 1}}
---
Work on {{{{ issue.identifier }}}}"""
    tracker = MemoryTracker([Issue(id="1", identifier="L-1", title="one", state="todo")])
    async with tether.App(f"sqlite:///{tmp_path}/t.db") as app:
        path.write_text(text)
        d = Dispatcher(app, WorkflowWatcher(path), tracker=tracker, backend=MockBackend())
        path.write_text(text.replace("max_turns: 1", "max_turns: 0"))  # broken from here
        stop = asyncio.Event()
        caplog.set_level("WARNING", logger="tether")
        serving = asyncio.ensure_future(d.serve(stop=stop))
        try:
            for _ in range(4):  # a refresh is taken when a tick starts: 3 ticks have ended
                await eventually(lambda: d.refresh()["coalesced"] is False, timeout=30)
        finally:
            stop.set()
            await serving
    said = [r.getMessage() for r in caplog.records if "no new dispatch" in r.getMessage()]
    assert len(said) == 1, said
    assert tracker.issues["1"].state == "todo"  # nothing dispatched meanwhile


async def test_the_retention_chore_never_holds_up_a_tick(tmp_path: Path) -> None:
    """A slow `before_remove` at start-up: the first tick dispatches all the same."""
    from tether.agents import WorkspaceManager
    from tether.agents._config import HooksSettings

    hold = tmp_path / "hold"
    hold.write_text("")
    hook = f"while [ -e {hold} ]; do sleep 0.05; done"
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp_path / "ws"}}}
hooks: {{before_remove: "{hook}", timeout_ms: 600000}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}""",
        path=tmp_path / "WORKFLOW.md",
    )
    old = await WorkspaceManager(tmp_path / "ws", HooksSettings()).ensure("OLD-1")
    tracker = MemoryTracker(
        [
            Issue(id="1", identifier="OLD-1", title="old", state="done"),
            Issue(id="2", identifier="NEW-1", title="new", state="todo"),
        ]
    )
    async with tether.App(f"sqlite:///{tmp_path}/t.db") as app:
        d = Dispatcher(app, config, tracker=tracker, backend=MockBackend([{}]))
        stop = asyncio.Event()
        serving = asyncio.ensure_future(d.serve(stop=stop))
        try:
            await eventually(lambda: tracker.issues["2"].state == "review", timeout=30)
            assert old.path.exists()  # its before_remove still runs
            hold.unlink()
            await eventually(lambda: not old.path.exists(), timeout=30)
        finally:
            hold.unlink(missing_ok=True)
            stop.set()
            await serving
