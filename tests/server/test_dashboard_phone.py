"""The runs list, a run's page and the agents' issues in Chromium on a phone (390 px) and on a desktop, as
their reader sees them: each run's id, status and cost in sight without scrolling
sideways, with long run ids, long workflow and signal names, tags and calls at no
known price."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import TETHER, Served, environment, start
from .test_dashboard import done, shot, text_of, wait_until
from .test_dashboard_agents import _issue_waiting_for_a_person

browser = test_dashboard.browser  # the fixture: a headless Chromium

LONG = "summarise_the_customer_support_tickets_of_the_week"
SIGNAL = "approve_the_summary_before_it_goes_to_the_whole_company"
QUEUE = "a-queue-with-a-very-long-name-for-background-processing-jobs"
FLOWS = textwrap.dedent(
    f"""
    import os

    import tether
    from tether import ai

    prices = ai.Prices({{"demo:small": {{"input_per_million": 0.4, "output_per_million": 1.6}}}})
    model = ai.FakeModel(lambda name, request: "An answer.")
    app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

    @app.workflow
    async def greet(wf: tether.Workflow) -> str:
        return await wf.step("hello", lambda: "hello")

    @app.workflow
    async def {LONG}(wf: tether.Workflow) -> str:
        await wf.ai.generate_text("demo:small", prompt="tickets")
        return (await wf.ai.generate_text("demo:local", prompt="x")).text  # no price

    @app.workflow
    async def {LONG}_approved(wf: tether.Workflow) -> object:
        await wf.step("draft", lambda: 1)
        return await wf.wait_for_signal("{SIGNAL}")

    app.queue("{QUEUE}", concurrency=2)
    """
)

SEEN = """
const out = [];
const box = document.querySelector('#runs-list .scroll').getBoundingClientRect();
const room = Math.min(box.right, window.innerWidth);
document.querySelectorAll('#runs-body tr[data-run-id]').forEach(tr => {
  const parts = {link: tr.querySelector('a'), status: tr.querySelector('.badge'),
                 cost: tr.querySelector('td.num'), created: tr.querySelector('time')};
  const row = {id: tr.dataset.runId, lines: parts.created.getClientRects().length};
  for (const [name, el] of Object.entries(parts)) {
    const r = el.getBoundingClientRect();
    row[name] = el.textContent.trim() === '' || (r.width > 0 && r.right <= room + 0.5);
  }
  out.push(row);
});
return out;
"""


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


@pytest.mark.parametrize("width", [390, 1280])
def test_each_runs_status_and_cost_are_in_sight_on_a_phone_and_a_desktop(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # on a phone the table showed the id and the workflow; the status, times and cost
    # were past the screen's right edge, reached by scrolling the table sideways
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        ids = [
            client.start("greet", workflow_id="order-0012345", tags=["demo", "customer-" * 8]),
            client.start("greet", workflow_id="very-long-id-" + "x" * 120),
            client.start(LONG, workflow_id="weekly-1"),
        ]
        for wid in ids:
            done(client, wid)
    browser.set_window_size(width, 900)
    browser.get(dash.url + "/runs")
    rows = browser.execute_script(SEEN)
    shot(browser, tmp_path, f"runs-{width}", width=width)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    for row in rows:
        assert row["link"] and row["status"] and row["cost"] and row["created"], row
        assert row["lines"] == 1, row  # a time on one line
    browser.set_window_size(width, 900)
    assert browser.execute_script(
        "return document.scrollingElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways"
    assert browser.execute_script(
        "const s = document.querySelector('#runs-list .scroll'); "
        "return s.scrollWidth <= s.clientWidth"
    ), "the table scrolls sideways"
    browser.get(dash.url + "/runs?status=failed")  # none: the list says so, as a sentence
    empty = browser.find_element(By.CSS_SELECTOR, "#runs-body td.empty")
    assert empty.text == "No runs match these filters."
    assert "mono" not in empty.value_of_css_property("font-family")  # it was in an id's font


@pytest.mark.parametrize("width", [390, 1280])
def test_a_run_page_with_long_names_fits_a_phone_and_a_desktop(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # on a phone the breadcrumb's workflow name and the wait's signal name (words joined
    # by '_') widened the page: its right part, the send button's end too, was off
    # screen; and the summary's facts, one a row, took a whole screen before the wait
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start(f"{LONG}_approved", workflow_id="approval-1")
        done(client, wid, RunStatus.WAITING)
    browser.set_window_size(width, 900)
    browser.get(f"{dash.url}/runs/{wid}")
    shot(browser, tmp_path, f"run-long-names-{width}", width=width)
    browser.set_window_size(width, 900)
    assert browser.execute_script(
        "return document.scrollingElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways"

    def button_right(d: Any) -> float | None:
        # read in one go, again if the live part of the page was swapped meanwhile
        button = d.find_element(By.CSS_SELECTOR, "#waits form.act-signal button")
        assert SIGNAL in button.text.replace("\n", "")
        return float(d.execute_script("return arguments[0].getBoundingClientRect().right", button))

    right = wait_until(browser, button_right, "no send button for the signal")
    assert right <= browser.execute_script("return window.innerWidth"), right
    lefts = browser.execute_script(
        "return new Set([...document.querySelectorAll('.facts > div')]"
        ".map(d => Math.round(d.getBoundingClientRect().left))).size"
    )
    assert lefts >= 2, "one fact a row"


@pytest.mark.parametrize("width", [390, 1280])
def test_an_issues_tokens_and_cost_are_in_sight_on_a_phone_and_a_desktop(
    tmp_path: Path, browser: Any, width: int
) -> None:
    # on a phone the issues' table showed the issue, its phase, run and attempt; its
    # tokens, cost, last event and workspace were past the screen's right edge
    url = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_issue_waiting_for_a_person(url, tmp_path))
    served = start(tmp_path, url)
    try:
        browser.set_window_size(width, 900)
        browser.get(served.url + "/agents")
        wait_until(browser, lambda d: "C-1" in text_of(d, "table.agents"), "no issue row")
        shot(browser, tmp_path, f"agents-{width}", width=width)
        browser.set_window_size(width, 900)
        seen = browser.execute_script(
            "const tr = document.querySelector('tr[data-issue=\"C-1\"]');"
            "const room = Math.min(innerWidth, tr.closest('.scroll').getBoundingClientRect().right);"
            "return [...tr.children].map(c => [c.textContent.trim(),"
            " c.getBoundingClientRect().right <= room + 0.5]);"
        )
    finally:
        served.stop()
    # 150 tokens at no known price: unknown, never $0 (as the usage page says it)
    assert [" ".join(text.split()) for text, _ in seen][4:6] == ["150", "unknown +1 unpriced"]
    assert all(inside for _, inside in seen), seen


@pytest.mark.parametrize("width", [390, 1280])
def test_a_queue_no_worker_serves_is_named_and_said_so_in_sight(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # the hint of a queue no worker serves (a command with the queue's name) stayed on
    # one line: on a desktop it pushed the "Workers" column past the table's edge, and
    # squeezed the queue's name to a word a line; on a phone the table scrolled
    # sideways, its Workers column (the command) out of sight past the screen's edge
    browser.set_window_size(width, 900)
    browser.get(dash.url + "/queues")
    wait_until(browser, lambda d: QUEUE in text_of(d, "table.queues"), "no queue row")
    shot(browser, tmp_path, f"queues-{width}", width=width)
    browser.set_window_size(width, 900)
    got = browser.execute_script(
        "const s = document.querySelector('#queues .scroll');"
        "const room = Math.min(innerWidth, s.getBoundingClientRect().right);"
        "const tr = document.querySelector('table.queues tbody tr');"
        "const name = tr.querySelector('th');"
        "const range = document.createRange(); range.selectNodeContents(name);"
        "const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;"
        "const seen = {};"
        "for (const [k, css] of [['name', 'th'], ['queued', 'td[data-status=queued]'],"
        "    ['claimed', 'td[data-status=claimed]'], ['workers', 'td[data-workers]']]) {"
        "  const r = tr.querySelector(css).getBoundingClientRect();"
        "  seen[k] = r.width > 0 && r.left >= 0 && r.right <= room + 0.5; }"
        "return {overflow: s.scrollWidth - s.clientWidth, lines: lines, seen: seen,"
        " page: document.scrollingElement.scrollWidth - innerWidth,"
        " hint: document.querySelector('td[data-workers] .warn').textContent};"
    )
    assert got["hint"].startswith("none: tether worker") and QUEUE in got["hint"], got
    assert got["overflow"] <= 0 and got["page"] <= 0, got  # no sideways scroll
    assert all(got["seen"].values()), got
    if width >= 1000:  # a desktop shows the name whole
        assert got["lines"] <= 3, got


@pytest.mark.parametrize("width", [390, 1280])
def test_each_live_process_and_its_heartbeat_are_in_sight_on_a_phone_and_a_desktop(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # on a phone the "Live processes" table scrolled sideways: the process's id and its
    # queues showed, its workflows, heartbeat and lease were past the screen's edge
    worker = subprocess.Popen(
        [TETHER, "--db", dash.db, "worker", "--app", "flows.py:app", "--queue", QUEUE],
        cwd=dash.folder, env=environment(dash.folder, dash.db),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        browser.set_window_size(width, 900)
        browser.get(dash.url + "/queues")
        wait_until(browser, lambda d: QUEUE in text_of(d, "table.workers"), "no worker row")
        shot(browser, tmp_path, f"workers-{width}", width=width)
        browser.set_window_size(width, 900)
        got = browser.execute_script(LIVE)
        shown = text_of(browser, "table.workers")
    finally:
        worker.terminate()
        worker.wait(30)
    assert len(got["rows"]) == 2, got  # the server and the worker
    assert got["overflow"] <= 0 and got["page"] <= 0, got  # no sideways scroll
    for row in got["rows"]:
        assert all(row.values()), got
    assert "ago" in shown and LONG in shown and QUEUE in shown, shown


LIVE = """
const s = document.querySelector('#workers .scroll');
const room = Math.min(innerWidth, s.getBoundingClientRect().right);
const rows = [...document.querySelectorAll('table.workers tbody tr')].map(tr => {
  const seen = {};
  [...tr.children].forEach((cell, i) => {
    const r = cell.getBoundingClientRect();
    seen[i] = r.width > 0 && r.left >= 0 && r.right <= room + 0.5; });
  return seen; });
return {rows: rows, overflow: s.scrollWidth - s.clientWidth,
        page: document.scrollingElement.scrollWidth - innerWidth};
"""
