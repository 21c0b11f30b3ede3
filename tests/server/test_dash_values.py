"""A run whose values are megabytes (a document pipeline's text) on the dashboard: its
page shows the beginning of each value, says how large the whole is and links to it
as JSON; its live stream sends an event's large detail as its beginning too. Over HTTP
against a real `tether serve`, and in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

MB = 1024 * 1024
TEXT = "".join(f"Line {i:06d} of the contract: the parties agree. " for i in range(110_000))
assert len(TEXT) > 5 * MB  # a document of 5 MB and more
PAGE_MAX = 200_000  # bytes: the page with every value cut short (it was 25 MB)

FLOWS = """
import os

import tether

app = tether.App(os.environ["FLOWS_DB"])


@app.workflow
async def document(wf: tether.Workflow, text: str) -> object:
    upper = await wf.step("upper", lambda: text.upper())
    await wf.update_state({"summary": upper})
    await wf.append_event("document.read", "read " + text[:1000], {"text": text})
    got = await wf.wait_for_signal("go")
    await wf.append_event("document.done", None, {"text": text})
    return got


@app.workflow
async def unreadable(wf: tether.Workflow, text: str) -> None:
    raise ValueError("cannot parse the document: " + text)
"""


async def _document(db: str) -> None:
    """A run of `document` on the served database, its input, state, an event's detail
    and its output each megabytes, driven here; it ends waiting for ``go``."""
    flows: dict[str, Any] = {}
    exec(FLOWS.replace('os.environ["FLOWS_DB"]', repr(db)), flows)  # the served code
    app = flows["app"]
    try:
        await app.arun(flows["document"], TEXT, workflow_id="doc-1")
        with contextlib.suppress(ValueError):
            await app.arun(flows["unreadable"], TEXT, workflow_id="doc-bad")
    finally:
        await app.aclose()


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Served]:
    """`tether serve` of a database holding run ``doc-1``, parked; the served App
    drives it on when it is signalled ``go``."""
    db = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_document(db))
    s = start(tmp_path, db, flows=FLOWS)
    yield s
    s.stop()


def _whole(served: Served, href: str) -> Any:
    got = httpx.get(urljoin(served.url, href), timeout=60)
    assert got.status_code == 200, got.text[:300]
    assert got.headers["content-type"] == "application/json"
    return got.json()


def _read_event(served: Served) -> Any:
    """The run's event ``document.read``, as the API lists it (whole)."""
    events = httpx.get(f"{served.url}/api/v1/runs/doc-1/events", timeout=60).json()["events"]
    return next(e for e in events if e["type"] == "document.read")


def test_a_run_page_of_megabytes_is_bounded_and_links_each_value_whole(big: Served) -> None:
    # the page sent 25 MB (input, state, output and an event's detail, each whole), and
    # sent it again at each event of the run (a live page re-reads itself)
    page = httpx.get(f"{big.url}/runs/doc-1", timeout=60)
    assert page.status_code == 200
    assert len(page.content) < PAGE_MAX, len(page.content)
    html = page.text
    assert "Showing the first 4,000 of 5," in html  # the whole value's size, stated
    assert "MiB of JSON" in html
    assert _whole(big, "/run/value?id=doc-1&part=input") == TEXT
    assert _whole(big, "/run/value?id=doc-1&part=state") == {"summary": TEXT.upper()}
    seq = _read_event(big)["seq"]
    got = _whole(big, f"/run/value?id=doc-1&part=event&seq={seq}")
    assert got["detail"] == {"text": TEXT} and got["message"] == "read " + TEXT[:1000]
    assert f"/run/value?id=doc-1&amp;part=event&amp;seq={seq}" in html
    assert "/run/value?id=doc-1&amp;part=input" in html


def test_the_output_is_bounded_once_the_run_ends(big: Served) -> None:
    with Client(big.url) as client:
        client.signal("doc-1", "go", "x" * 300_000)
        done(client, "doc-1", RunStatus.COMPLETED)
    page = httpx.get(f"{big.url}/runs/doc-1", timeout=60)
    assert len(page.content) < PAGE_MAX, len(page.content)
    assert _whole(big, "/run/value?id=doc-1&part=output") == "x" * 300_000


def test_an_error_quoting_a_document_is_cut_on_its_page(big: Served) -> None:
    # a message of 5 MB (and its traceback, which quotes it) was sent whole in the
    # run's summary, and again in its data
    page = httpx.get(f"{big.url}/runs/doc-bad", timeout=60)
    assert page.status_code == 200
    assert len(page.content) < PAGE_MAX, len(page.content)
    assert "A message of 5,280,027 characters is cut at its first 100,000." in page.text
    whole = _whole(big, "/run/value?id=doc-bad&part=error")
    assert whole["message"] == "cannot parse the document: " + TEXT
    assert whole["type"] == "ValueError"


def test_the_value_address_refuses_what_it_cannot_answer(big: Served) -> None:
    for query, status, code in (
        ("id=doc-1&part=steps", 422, "invalid_part"),
        ("id=nobody&part=input", 404, "run_not_found"),
        ("part=input", 422, "missing_id"),
        ("id=a%00b&part=input", 404, "run_not_found"),  # no run can have it
        ("id=doc-1&part=event&seq=0", 422, "invalid_seq"),
        ("id=doc-1&part=event&seq=x", 422, "invalid_seq"),
        ("id=doc-1&part=event&seq=999999", 404, "event_not_found"),
    ):
        got = httpx.get(f"{big.url}/run/value?{query}", timeout=30)
        assert got.status_code == status, (query, got.text)
        assert got.json()["error"]["code"] == code, query


def test_the_live_stream_sends_a_large_detail_as_its_beginning(big: Served) -> None:
    # the page's stream (the API's, at /run/events) sent every event's detail whole
    frames = []
    with httpx.stream("GET", f"{big.url}/run/events?id=doc-1", timeout=60) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
            if len(frames) >= 5:  # up to the wait: the run is parked
                break
    read = next(f for f in frames if f.get("type") == "document.read")
    assert read["detail"] is None and read["message"] is None
    assert len(read["detail_preview"]["text"]) == 300
    assert read["detail_preview"]["href"] == f"/run/value?id=doc-1&part=event&seq={read['seq']}"
    assert "MiB" in read["detail_preview"]["size"]
    assert _read_event(big)["detail"] == {"text": TEXT}  # the API's events stay whole


READ = """
const out = document.querySelector('#run-input');
const box = out.getBoundingClientRect();
const note = out.nextElementSibling;
return {
  height: box.height, right: box.right, inner: innerWidth,
  sideways: document.scrollingElement.scrollWidth > innerWidth,
  note: note ? note.textContent : null,
  href: note ? note.querySelector('a').getAttribute('href') : null,
  rowHeight: document.querySelector('#events-body tr:last-child').getBoundingClientRect().height,
};
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_a_preview_reads_well_in_chromium(
    big: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 900)
    browser.get(f"{big.url}/runs/doc-1")
    browser.find_element(By.CSS_SELECTOR, "details.data-input summary").click()
    browser.execute_script("document.querySelector('#data').scrollIntoView()")
    shot(browser, tmp_path, f"values-{width}", width=width)
    browser.set_window_size(width, 900)
    got = browser.execute_script(READ)
    assert got["height"] < 500, got  # a box of a few screens' lines, not metres
    assert got["right"] <= got["inner"] and not got["sideways"], got  # wrapped, not wide
    assert got["note"].startswith("Showing the first 4,000 of 5,"), got["note"]
    assert got["rowHeight"] < 400, got  # the event's row: a few lines of its detail
    assert got["href"] == "/run/value?id=doc-1&part=input"
    browser.get(urljoin(big.url, got["href"]))
    shown = browser.find_element(By.TAG_NAME, "body").text
    assert shown.startswith('"Line 000000') and shown.rstrip().endswith('agree. "')


def test_a_large_detail_arrives_live_as_its_beginning_in_chromium(
    big: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{big.url}/runs/doc-1")
    wait_until(browser, lambda d: "live" in d.find_element(By.ID, "live").text, "not live")
    with Client(big.url) as client:
        client.signal("doc-1", "go", "ok")
    row = 'tr[data-seq] td.detail a.value-whole[href*="part=event"]'
    links = wait_until(
        browser,
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, row)) == 2
            and d.find_elements(By.CSS_SELECTOR, row)
        ),
        "the run's second large event never arrived",
    )
    shot(browser, tmp_path, "values-live")
    live = links[-1]
    assert live.text == "whole (5.0 MiB)", live.text
    cell = live.find_element(By.XPATH, "..")
    assert cell.text.startswith('{"text":"Line 000000') and len(cell.text) < 400, cell.text[:500]
    href = live.get_attribute("href")
    got = httpx.get(href, timeout=60).json()
    assert got["type"] == "document.done" and got["detail"] == {"text": TEXT}


def test_a_cut_error_reads_well_in_chromium(big: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{big.url}/runs/doc-bad")
    shot(browser, tmp_path, "values-error")
    browser.set_window_size(1280, 900)
    box = browser.find_element(By.CSS_SELECTOR, "#summary .last-error")
    assert box.size["height"] < 500, box.size  # its first lines, the rest behind the toggle
    note = browser.find_element(By.CSS_SELECTOR, "#summary .err-clipped")
    assert note.is_displayed() and "cut at its first 100,000" in note.text
    toggle = box.find_element(By.CSS_SELECTOR, "details.err-more summary").text
    assert toggle == "Show more of the error (its first 100,000 characters of 5,280,027)", toggle
    href = note.find_element(By.TAG_NAME, "a").get_attribute("href")
    assert httpx.get(href, timeout=60).json()["type"] == "ValueError"


def test_the_value_address_follows_the_pages_token_rules(
    secured: tuple[Served, dict[str, str]],
) -> None:
    # a value is as private as the page that links it: a token of scope read, at least
    served, tokens = secured
    url = f"{served.url}/run/value?id=nobody&part=input"
    assert httpx.get(url, timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {tokens['read']}"}
    got = httpx.get(url, headers=bearer, timeout=30)
    assert got.status_code == 404 and got.json()["error"]["code"] == "run_not_found"


dash = test_dashboard.dash  # `tether serve` of flows with `greet`


@pytest.mark.parametrize("wid", ["a/b?c#d&e %2F", "..", " spaced "])
def test_a_values_link_reaches_any_run_id(dash: Served, wid: str) -> None:
    with Client(dash.url) as client:
        client.start("greet", "Ada" * 2000, workflow_id=wid)  # past a preview
        done(client, wid, RunStatus.COMPLETED)
    page = httpx.get(f"{dash.url}/run", params={"id": wid}, timeout=30)
    assert page.status_code == 200
    found = re.search(r'href="(/run/value\?id=[^"]*part=input)"', page.text)
    assert found is not None
    assert _whole(dash, html.unescape(found.group(1))) == "Ada" * 2000
    output = f"/run/value?id={quote(wid, safe='')}&part=output"
    assert _whole(dash, output) == "hello " + "Ada" * 2000
