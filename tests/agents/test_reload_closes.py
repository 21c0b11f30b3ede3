"""A tracker or backend a WORKFLOW.md edit replaced is closed once nothing uses it
(it was left open: an api backend's model clients leaked with every such edit)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher

from .trackers._servers import FakeGitHub


def _write(tmp: Path, tracker: str, agent: str = "backend: mock") -> Path:
    path = tmp / "WORKFLOW.md"
    path.write_text(
        f"""---
tracker: {{{tracker}, active_states: [open], terminal_states: [closed]}}
workspace: {{root: {tmp / "ws"}}}
agent: {{{agent}, max_turns: 1}}
---
Work on {{{{ issue.identifier }}}}"""
    )
    return path


def _closed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed the ")]


async def test_a_replaced_tracker_is_closed_and_a_kept_one_is_not(
    database_url: str, tmp_path: Path, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.agents")
    github.add(1, "Fix the typo")
    hub = f'kind: github, repo: acme/api, endpoint: "{github.base}", api_key: gh-token'
    path = _write(tmp_path, "kind: memory")
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, path)
        await d.tick()
        memory = d.tracker()
        _write(tmp_path, hub)
        report = await d.tick()  # reloads, closes the memory tracker, asks GitHub
        assert d.tracker() is not memory and report.dispatched == ["api#1"]
        assert _closed(caplog) == ["closed the memory tracker a WORKFLOW.md edit replaced"]
        kept = d.tracker()
        _write(tmp_path, hub, 'backend: mock, script: [{result: "failed"}]')
        await d.tick()  # only the backend changed: the github tracker is kept, open
        assert d.tracker() is kept and kept.kind == "github"
        assert not any("github" in m for m in _closed(caplog))
