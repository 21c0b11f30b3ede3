"""A walk of the dashboard on a full database (runs of every status, ids and names of
hundreds of characters, unicode, 500 steps), at 1280 and 390 pixels wide. What it
found, each in Chromium against a real `tether serve`: on the queues page a process
serving a workflow with a long name drew its list of workflows on one line, the table
wider than the page (its start, heartbeat and lease scrolled out of sight); and on a
run's page the last error (or a cancellation's reason) sat flush against the cards
above it, no gap between them."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

LONG = "reconcile_customer_invoices_against_the_external_ledger_" * 3

FLOWS = textwrap.dedent(
    f"""
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow(name={LONG!r})
    async def long_name(wf: tether.Workflow) -> int:
        return await wf.step("one", lambda: 1)

    @app.workflow
    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise RuntimeError("declined")
    """
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


WORKERS_MEASURE = """
const table = document.querySelector('table.workers');
const box = table.parentElement.getBoundingClientRect();
const cells = [...table.querySelectorAll('tbody tr:first-child > *')];
return [table.getBoundingClientRect().right - box.right,
        Math.max(...cells.map(c => c.getBoundingClientRect().right - box.right))];
"""


def test_a_process_serving_a_long_workflow_name_fits_the_queues_page(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    for width in (1280, 390):
        browser.set_window_size(width, 800)
        browser.get(f"{served.url}/queues")
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.workers tbody tr"),
                   "the server is not listed as a live process")  # fmt: skip
        assert LONG in browser.find_element(By.CSS_SELECTOR, "table.workers").text
        past = browser.execute_script(WORKERS_MEASURE)
        shot(browser, tmp_path, f"walk41-queues-{width}", width)
        # every column (up since, heartbeat, lease) in sight, none scrolled away
        assert max(past) <= 0.5, (width, past)


def test_the_last_error_keeps_a_gap_below_the_cards_of_a_run(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    with Client(served.url) as client:
        wid = client.start("broken")
        done(client, wid, RunStatus.FAILED)
    for width in (1280, 390):
        browser.set_window_size(width, 800)
        browser.get(f"{served.url}/runs/{wid}")
        gap = browser.execute_script(
            "const cards = document.querySelector('#summary dl.facts').getBoundingClientRect();"
            "return document.querySelector('#summary .last-error').getBoundingClientRect().top"
            " - cards.bottom;"
        )
        shot(browser, tmp_path, f"walk41-error-gap-{width}", width)
        assert gap >= 8, (width, gap)  # as far as the cards are from one another, or more
