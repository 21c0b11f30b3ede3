"""A run's timeline (`_dash_view.timeline`) drawn from a real run's record, and a run's
page in Chromium for a run of many steps."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tether import Client, RunStatus
from tether.server._dash_runs import MAX_EVENTS
from tether.server._dash_view import HEAD_BARS, TAIL_BARS, timeline

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium


def test_a_retried_steps_bar_begins_with_its_first_attempt(tmp_path: Path) -> None:
    # a step's row keeps its last attempt's start: its bar began there, the failed
    # attempts' marks stood on an empty track before it, and it said "0.0s" for a step
    # that took the whole run
    app = tether.App(f"sqlite:///{tmp_path}/t.db")
    tries = {"n": 0}

    def flaky() -> int:
        tries["n"] += 1
        if tries["n"] < 3:
            raise RuntimeError("flaky")
        return 1

    @app.workflow
    async def retried(wf: tether.Workflow) -> int:
        return await wf.step("flaky", flaky, retry=tether.RetryPolicy(attempts=4, backoff=0.1,
                                                                      jitter=0.0))  # fmt: skip

    try:
        app.run(retried, workflow_id="r")
        rec = app.get_record("r")
    finally:
        app.close()
    first = next(e.at for e in rec.events if e.type == "step.started")
    step = rec.steps["flaky"]
    assert step.attempts == 3 and step.started_at is not None and step.started_at > first
    (bar,) = [b for b in timeline(rec, [], [], rec.finished_at or first).bars if b.label == "flaky"]
    assert bar.started == first and bar.note == "3 attempts"
    assert bar.seconds is not None and bar.seconds >= 0.3  # two backoffs of 0.1 s, then 0.2 s
    assert len(bar.marks) == 2 and all(bar.left <= m <= bar.left + bar.width for m in bar.marks)


READ = """
const gap = document.querySelector('.tl-gap');
return {height: document.scrollingElement.scrollHeight, width: document.scrollingElement.scrollWidth,
        inner: innerWidth, rows: document.querySelectorAll('.tl-row').length,
        gap: gap ? gap.textContent : null,
        events: document.querySelectorAll('#events-body tr[data-seq]').length,
        earlier: (document.querySelector('#events-body tr.earlier') || {}).textContent || null,
        last: document.querySelector('#events-body tr[data-seq]:last-child').dataset.seq};
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_a_run_of_many_steps_has_a_page_of_bounded_height(
    served: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # a step in a loop of 3,000 made a run's page 80,000 px tall (a timeline row a step,
    # an events row an event), its data and events screens down, 2.5 MB of HTML read
    # again at each event of a live run
    with Client(served.url) as client:
        wid = client.start("counts", 600)
        rec = done(client, wid, RunStatus.COMPLETED)
    browser.set_window_size(width, 900)
    browser.get(f"{served.url}/runs/{wid}")
    shot(browser, tmp_path, f"run-many-steps-{width}", width=width)
    browser.set_window_size(width, 900)
    got = browser.execute_script(READ)
    assert got["height"] < 4000 and got["width"] <= got["inner"], got
    assert got["rows"] == HEAD_BARS + TAIL_BARS + 1, got  # the first, the last, the gap
    assert got["gap"].startswith(f"… {600 - HEAD_BARS - TAIL_BARS} more rows"), got
    assert got["events"] == MAX_EVENTS and got["last"] == str(rec.events[-1].seq), got
    hidden = len(rec.events) - MAX_EVENTS
    assert got["earlier"].startswith(f"the {hidden:,} earlier events are not listed"), got
    link = browser.find_element("css selector", "#events-body tr.earlier a").get_attribute("href")
    listed = httpx.get(link).json()["events"]  # the API has every one
    assert len(listed) == len(rec.events)


LONG_THEN_WAITS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def long_then_waits(wf: tether.Workflow) -> object:
        for i in range(60):
            await wf.step("tick", lambda: i)
        await wf.wait_for_signal("go")
        await wf.step("after", lambda: 1)
        return await wf.wait_for_signal("again")
    """
)


def test_a_scrolled_timeline_stays_where_it_was_read_through_a_redraw(
    tmp_path: Path, browser: Any
) -> None:
    # a long timeline scrolls in its box; at each event of the live run the part was
    # drawn again and the box went back to its top, under the reader's eyes
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=LONG_THEN_WAITS)
    try:
        with Client(served.url) as client:
            wid = client.start("long_then_waits")
            done(client, wid, RunStatus.WAITING)
            browser.get(f"{served.url}/runs/{wid}")
            box = "document.querySelector('#timeline .timeline')"
            assert browser.execute_script(f"return {box}.scrollHeight > {box}.clientHeight")
            browser.execute_script(f"{box}.scrollTop = 300")
            client.signal(wid, "go")
            wait_until(browser, lambda d: d.find_elements("css selector",
                       '#timeline .tl-row[data-name="after"]'), "the redraw never came")  # fmt: skip
            assert abs(browser.execute_script(f"return {box}.scrollTop") - 300) <= 1
            at_end = f"{box}.scrollTop = {box}.scrollHeight"
            browser.execute_script(at_end)  # following the newest rows, at the end
            client.signal(wid, "again")
            wait_until(browser, lambda d: text_of(d, "#run-status") == "completed", "no end")
            left = browser.execute_script(
                f"return {box}.scrollHeight - {box}.scrollTop - {box}.clientHeight"
            )
            assert left < 4, left  # still at the end, the newest rows in sight
    finally:
        served.stop()
