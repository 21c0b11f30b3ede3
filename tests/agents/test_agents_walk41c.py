"""`tether agents`: every subcommand takes WORKFLOW.md as `run` does (an argument) or as
--workflow; GET /api/v1/refresh is a 405 naming POST, not the issue "refresh"; the
state view's `generated_at` is the app's clock's time."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import httpx

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.server import ServerConfig, create_app, dispatcher_routes

from ..cli._helpers import ROOT
from ..cli._helpers import tether as cli


def _example(tmp: Path) -> Path:
    where = tmp / "examples" / "agents"
    shutil.copytree(ROOT / "examples" / "agents", where)
    return where


def test_status_show_and_run_take_workflow_md_as_an_argument_or_an_option(
    tmp_path: Path,
) -> None:
    """`run WORKFLOW.md` worked, `status WORKFLOW.md` was refused (it needed --workflow),
    and `run --workflow` was refused."""
    where = _example(tmp_path)
    ran = cli(where, "agents", "run", "--once", "WORKFLOW.md")
    assert ran.returncode == 0, ran.stderr
    assert "dispatched DEMO-1" in ran.stdout
    by_argument = cli(where, "agents", "status", "--all", "WORKFLOW.md")
    assert by_argument.returncode == 0, by_argument.stderr
    by_option = cli(where, "agents", "status", "--all", "--workflow", "WORKFLOW.md")
    assert by_option.returncode == 0, by_option.stderr
    assert "DEMO-1" in by_argument.stdout and by_argument.stdout == by_option.stdout
    shown = cli(where, "agents", "show", "DEMO-1", "WORKFLOW.md")
    assert shown.returncode == 0, shown.stderr
    assert "DEMO-1: run agent:file:DEMO-1 is completed" in shown.stdout
    # a missing file named as the argument is read as the WORKFLOW.md (not ignored)
    other = cli(where, "agents", "status", "OTHER.md")
    assert other.returncode != 0 and "OTHER.md" in other.stderr
    both = cli(where, "agents", "status", "WORKFLOW.md", "--workflow", "OTHER.md")
    assert both.returncode == 2 and "two WORKFLOW.md given" in both.stderr
    again = cli(where, "agents", "run", "--once", "--workflow", "WORKFLOW.md")
    assert again.returncode == 0 and "dispatched" not in again.stdout, again.stderr
    for command in ("status", "show", "answer", "retry", "stop", "run"):
        helped = cli(where, "agents", command, "--help")
        assert "[WORKFLOW.md]" in helped.stdout and "--workflow" in helped.stdout, command


def _dispatcher(app: tether.App, tmp_path: Path) -> Dispatcher:
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}""",
        path=tmp_path / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="1", identifier="G-1", title="one", state="todo")])
    return Dispatcher(app, config, tracker=tracker, backend=MockBackend())


def _client(app: tether.App, dispatcher: Dispatcher) -> httpx.AsyncClient:
    """The status API as `tether agents run --port` serves it (a loopback client)."""
    asgi = create_app(app, ServerConfig(allow_unauthenticated=True))
    asgi.include_router(dispatcher_routes(dispatcher))
    transport = httpx.ASGITransport(app=asgi)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_get_refresh_is_a_405_naming_post_not_an_issue(
    app: tether.App, tmp_path: Path
) -> None:
    """GET /api/v1/refresh was read as the issue "refresh" (404 issue_not_found)."""
    async with _client(app, _dispatcher(app, tmp_path)) as http:
        got = await http.get("/api/v1/refresh")
        assert got.status_code == 405, got.text
        allowed = [m.strip() for m in got.headers["allow"].split(",")]
        assert "POST" in allowed and "GET" not in allowed
        error = got.json()["error"]
        assert error["code"] == "method_not_allowed" and "POST" in error["message"]
        assert (await http.put("/api/v1/refresh")).headers["allow"] == got.headers["allow"]
        posted = await http.post("/api/v1/refresh")
        assert posted.status_code == 202 and posted.json()["queued"] is True
        missing = await http.get("/api/v1/G-1")  # other identifiers are issues still
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "issue_not_found"


async def test_state_is_generated_at_the_apps_clocks_time(app: tether.App, tmp_path: Path) -> None:
    """`generated_at` was the real time, whatever clock the App was given."""
    assert isinstance(app.clock, tether.FakeClock)
    app.clock.advance(timedelta(days=3, seconds=7))
    async with _client(app, _dispatcher(app, tmp_path)) as http:
        state = await http.get("/api/v1/state")
    assert state.status_code == 200, state.text
    assert state.json()["generated_at"] == "2026-01-04T00:00:07+00:00"
