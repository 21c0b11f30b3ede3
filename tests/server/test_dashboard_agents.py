"""The dashboard's /agents page in Chromium: the dispatcher's issue runs, read from
the database a real `tether serve` serves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents._run import ISSUE_WORKFLOW as DISPATCHER_WORKFLOW
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.server._dash_agents import ISSUE_WORKFLOW

from ._serve import start
from .test_dashboard import browser, shot, text_of, wait_until  # noqa: F401 (a fixture)


def test_the_page_reads_the_dispatchers_own_runs() -> None:
    assert ISSUE_WORKFLOW == DISPATCHER_WORKFLOW


async def _issue_waiting_for_a_person(url: str, tmp: Path) -> None:
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done]}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 2, max_retries: 1, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}
""",
        path=tmp / "WORKFLOW.md",
    )
    app = tether.App(url)
    tracker = MemoryTracker([Issue(id="C-1", identifier="C-1", title="Pick a colour",
                                   state="todo")])  # fmt: skip
    backend = MockBackend([{"result": "input_required", "message": "which colour?",
                            "usage": {"input_tokens": 120, "output_tokens": 30}}])  # fmt: skip
    try:
        await Dispatcher(app, config, tracker=tracker, backend=backend).run_once()
    finally:
        await app.aclose()


def test_the_agents_page_shows_an_issue_waiting_for_a_person(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_issue_waiting_for_a_person(url, tmp_path))
    served = start(tmp_path, url)
    try:
        browser.get(served.url + "/agents")
        wait_until(browser, lambda d: "C-1" in text_of(d, "table.agents"), "no issue row")
        row = text_of(browser, 'tr[data-issue="C-1"]')
        assert "Pick a colour" in row and "waiting" in row and "input_required" in row
        assert "150" in row  # tokens: 120 in + 30 out, from the call log
        assert str(tmp_path / "ws") in row  # its workspace
        assert text_of(browser, '[data-phase="waiting"]') == "waiting 1"
        shot(browser, tmp_path, "agents")
        browser.get(served.url + "/agents?all=1")
        wait_until(browser, lambda d: "C-1" in text_of(d, "table.agents"), "not in all")
    finally:
        served.stop()
