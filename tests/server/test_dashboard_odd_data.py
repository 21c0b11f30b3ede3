"""The dashboard on odd data: long tags and more child runs than a page draws (in
Chromium); a run that ended without a single step, an id that begins with a space,
and a run queued where no worker serves (over HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, text_of, wait_until
from .test_dashboard_ids import FLOWS as PARENT_FLOWS

browser = test_dashboard.browser  # the fixture: a headless Chromium
dash = test_dashboard.dash  # `tether serve` of flows with `greet`

TAGS_MEASURE = """
const card = [...document.querySelectorAll('.facts div')]
  .find(d => d.querySelector('dt').textContent === 'Tags');
const right = card.getBoundingClientRect().right;
return [...card.querySelectorAll('.tag')].map(t => t.getBoundingClientRect().right - right);
"""


def test_long_tags_stay_inside_their_card_on_a_run_page(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    # a tag of 200 characters was cut at 16rem, wider than its card: its chip ran past
    # the card's right edge over the page (and the next card, when one followed)
    tags = ["t" * 200, "ü" * 60, "short"]
    with Client(dash.url) as client:
        wid = client.start("greet", "Ada", tags=tags)
        done(client, wid, RunStatus.COMPLETED)
    browser.get(f"{dash.url}/runs/{wid}")
    past = browser.execute_script(TAGS_MEASURE)
    shot(browser, tmp_path, "run-long-tags")
    assert len(past) == 3, past
    assert max(past) <= 0.5, past  # each chip ends inside its card


@pytest.fixture
def parents(tmp_path: Path) -> Iterator[Served]:
    """`tether serve` of flows with `parent`, a run of n child runs."""
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=PARENT_FLOWS)
    yield s
    s.stop()


def _child_links(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".kind-child .tl-label a")]


def test_every_child_run_is_reachable_from_its_parents_page(
    parents: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # past the first 50, the page said "and 2 more child runs, not shown here" and led
    # nowhere: the API lists no runs by parent, so those children could not be found
    with Client(parents.url) as client:
        wid = client.start("parent", 52, workflow_id="parent-1")
        done(client, wid, RunStatus.COMPLETED)
    browser.get(f"{parents.url}/runs/{wid}")
    first = _child_links(browser)
    assert len(first) == 50
    browser.find_element(By.ID, "later-children").click()
    wait_until(browser, lambda d: "children=50" in d.current_url, "no page of later children")
    rest = _child_links(browser)
    shot(browser, tmp_path, "run-later-children")
    assert len(rest) == 2 and not set(rest) & set(first), rest
    assert text_of(browser, ".more-children").startswith("child runs 51 to 52 of 52"), text_of(
        browser, ".more-children"
    )
    browser.find_element(By.ID, "earlier-children").click()
    wait_until(browser, lambda d: d.current_url.endswith(f"/runs/{wid}"), "not back to the first")
    assert _child_links(browser) == first


def test_a_run_that_ended_without_steps_does_not_say_steps_may_come(served: Served) -> None:
    # a completed run with no step said "No steps yet.", as a run about to take one does
    with Client(served.url) as client:
        wid = client.start("counts", 0)
        done(client, wid, RunStatus.COMPLETED)
    page = httpx.get(f"{served.url}/runs/{wid}").text
    timeline = re.search(r'<section[^>]*id="timeline".*?</section>', page, re.S)
    assert timeline is not None, page
    assert "No steps yet" not in timeline.group(0)
    assert "The run ended without a step, wait or child run." in timeline.group(0)


def test_the_search_box_finds_a_run_whose_id_begins_or_ends_with_a_space(
    served: Served,
) -> None:
    # the box's text was trimmed before it was looked up: " padded " was "No run has the
    # id padded", though the run exists (an id pasted with spaces around it still works)
    with Client(served.url) as client:
        wid = client.start("counts", 0, workflow_id=" padded ")
        other = client.start("counts", 0, workflow_id="plain")
        done(client, wid, RunStatus.COMPLETED)
        done(client, other, RunStatus.COMPLETED)
    found = httpx.get(f"{served.url}/runs", params={"q": " padded "})
    assert found.status_code == 303, found.text
    assert found.headers["location"] == "/runs/%20padded%20"
    trimmed = httpx.get(f"{served.url}/runs", params={"q": " plain\n"})
    assert trimmed.headers.get("location") == "/runs/plain", trimmed.status_code


def test_a_queued_run_no_worker_serves_says_nothing_will_start_it(served: Served) -> None:
    # its page said "pending" and "not started" alone: only the queues page told that no
    # worker serves its queue, so nothing would ever start it
    with Client(served.url) as client:
        wid = client.start("counts", 1, queue="slow", workflow_id="queued 1")
        assert client.get_record(wid).status is RunStatus.PENDING
        direct = client.start("counts", 0)
        done(client, direct, RunStatus.COMPLETED)
    page = httpx.get(f"{served.url}/runs/queued%201").text
    driver = re.search(r'<div id="run-driver"[^>]*>(.*?)</div>', page, re.S)
    assert driver is not None, page
    text = re.sub(r"<[^>]+>", "", driver.group(1))
    assert "Driven bynobody: no worker serving queue slow and workflow counts" in text, text
    assert "tether worker --app FILE.py:app -q slow" in text, text
    assert 'id="run-driver"' not in httpx.get(f"{served.url}/runs/{direct}").text
