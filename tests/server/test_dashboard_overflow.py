"""A run's page in Chromium with text that never breaks: an error whose message is one
long word (a path, a blob, a token), at a desktop's width and a phone's."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot

browser = test_dashboard.browser  # the fixture: a headless Chromium

FLOWS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    def parse() -> None:
        raise ValueError("the tool output could not be parsed: " + "x" * 600)

    @app.workflow
    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        await wf.step("boom", parse)
    """
)

MEASURE = """
const box = document.querySelector('.events-box'), main = document.querySelector('main');
const row = type => [...document.querySelectorAll('#events-body tr')]
  .find(r => r.querySelector('code').textContent === type);
const width = td => td.getBoundingClientRect().width;
return {
  page_overflow: document.documentElement.scrollWidth - window.innerWidth,
  problem_right: document.querySelector('.problem').getBoundingClientRect().right,
  main_right: main.getBoundingClientRect().right,
  box_overflow: box.scrollWidth - box.clientWidth,
  failed_detail: width(row('step.failed').querySelector('td.detail')),
  message: width(row('workflow.failed').children[3]),
};
"""


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


@pytest.mark.parametrize("width", [1280, 390])
def test_an_unbroken_error_message_wraps_and_leaves_the_detail_readable(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # the last error widened the page by ~3000 px; in the events, the message's column
    # took ~4500 px and squeezed the step's error detail to 61 px, 2000 px tall
    with Client(dash.url) as client:
        wid = client.start("broken", workflow_id="broken-1")
        done(client, wid, RunStatus.FAILED)
    browser.set_window_size(width, 900)
    browser.get(f"{dash.url}/runs/{wid}")
    got = browser.execute_script(MEASURE)
    shot(browser, tmp_path, f"run-unbroken-error-{width}", width=width)
    assert got["page_overflow"] <= 0, got  # the page never scrolls sideways
    assert got["problem_right"] <= got["main_right"] + 0.5, got
    assert got["failed_detail"] >= 200, got  # ~25 characters a line, at least
    assert got["message"] <= 600, got
    # every column of the events in sight, no sideways scroll: on a phone each event is a
    # card (as a table, its message and detail were past the screen's right edge)
    assert got["box_overflow"] <= 0, got
