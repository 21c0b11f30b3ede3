"""The dashboard in Chromium with run ids a URL path mangles: '/', '#', '?', '%',
and the dot-segments ``..`` and ``.`` that a browser resolves away even when sent
as ``%2E%2E``. Every link, search, form, redirect and the live event stream of a
run's page reach the run; and the run page's other details (child runs, event
details, waits, a run whose owner died, who drives a woken run)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start, tether
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

FLOWS = textwrap.dedent(
    """
    import asyncio
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"], owner_lease=1.0)

    @app.workflow
    async def approve(wf: tether.Workflow) -> object:
        await wf.step("draft", lambda: "draft 1")
        return await wf.wait_for_signal("approve")

    @app.workflow
    async def greet(wf: tether.Workflow, n: int) -> int:
        return await wf.step("hello", lambda: n)

    @app.workflow
    async def kid(wf: tether.Workflow, k: int) -> int:
        return await wf.step("c", lambda: k)

    @app.workflow
    async def parent(wf: tether.Workflow, n: int) -> int:
        total = 0
        for k in range(n):
            total += await wf.child(kid, k)
        return total

    @app.workflow
    async def noted(wf: tether.Workflow) -> object:
        await wf.append_event("note", "a note", {"html": "<b>café</b> & \\"q\\"", "n": [1, 2]})
        return await wf.wait_for_signal("go")

    @app.workflow
    async def tokened(wf: tether.Workflow) -> object:
        return await wf.wait_for_token(await wf.create_token())

    @app.workflow
    async def hooked(wf: tether.Workflow) -> object:
        return await wf.wait_for_event("ping")

    @app.workflow
    async def slow(wf: tether.Workflow) -> None:
        await wf.step("first", lambda: 1)
        await wf.step("long", lambda: asyncio.sleep(600))
    """
)
ODD = ["..", ".", "../w", "q?x=1#frag", "pct%2Fenc", "a/b", "space id"]


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def _parked(client: Client, wid: str) -> str:
    assert client.start("approve", workflow_id=wid) == wid
    done(client, wid, RunStatus.WAITING)
    return wid


def _open_from_list(driver: Any, url: str, wid: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/runs")
    rows = driver.find_elements(By.CSS_SELECTOR, "#runs-body tr")
    row = next(r for r in rows if r.get_attribute("data-run-id") == wid)
    row.find_element(By.TAG_NAME, "a").click()
    wait_until(driver, lambda d: text_of(d, "h1") == wid, f"the link to {wid!r} led elsewhere")


def test_the_list_and_the_search_reach_any_run_id(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        for wid in ODD:
            _parked(client, wid)
    for wid in ODD:
        _open_from_list(browser, dash.url, wid)
        assert text_of(browser, "#run-status") == "waiting"
        browser.get(dash.url + "/runs")
        box = browser.find_element(By.ID, "f-q")
        box.send_keys(wid)
        box.submit()
        wait_until(browser, lambda d, w=wid: text_of(d, "h1") == w, f"searching lost {wid!r}")
        assert not browser.find_elements(By.CSS_SELECTOR, ".problem")
    shot(browser, tmp_path, "run-dotdot-search")
    # no id at all: a page, not the API's JSON; /runs/ is the list (as /usage/ is /usage)
    nothing = httpx.get(dash.url + "/run")
    assert nothing.status_code == 404 and "text/html" in nothing.headers["content-type"]
    assert "No run id was given" in nothing.text
    listed = httpx.get(dash.url + "/runs/", follow_redirects=True)
    assert listed.status_code == 200 and str(listed.url) == dash.url + "/runs"


def test_the_forms_and_the_stream_of_a_dot_segment_run(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        for wid in ("..", ".", "../w"):
            _parked(client, wid)
        _open_from_list(browser, dash.url, "..")  # followed live: its stream reaches '..'
        browser.execute_script("window.tetherMark = 'same page'")
        assert client.signal("..", "approve", "by the API")
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed",
                   "the page of '..' never followed its run")  # fmt: skip
        assert browser.execute_script("return window.tetherMark") == "same page"
        wait = browser.find_element(By.CSS_SELECTOR, '.tl-row[data-kind="wait"] .tl-meta').text
        assert wait.count("resolved") == 1, wait  # said once, not "resolved · 0.0s · resolved"
        _open_from_list(browser, dash.url, ".")
        form = browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal")
        form.find_element(By.NAME, "payload").send_keys('"by a browser"')
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_until(browser, lambda d: "done=signalled" in d.current_url, "no answer to the form")
        assert text_of(browser, "h1") == "."
        assert done(client, ".").output == "by a browser"
        _open_from_list(browser, dash.url, "../w")
        browser.find_element(By.ID, "reason").send_keys("not needed")
        browser.find_element(By.CSS_SELECTOR, "section.danger button").click()
        wait_until(browser, lambda d: d.find_elements(By.ID, "confirm-cancel"), "no confirm")
        browser.find_element(By.CSS_SELECTOR, "#confirm-cancel button").click()
        wait_until(browser, lambda d: "done=cancelled" in d.current_url, "no answer to cancel")
        assert text_of(browser, "h1") == "../w"
        assert done(client, "../w").status is RunStatus.CANCELLED
        shot(browser, tmp_path, "run-dotdot-cancelled")


def test_a_parents_child_links_lead_to_the_children(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("parent", 52, workflow_id="parent-1")
        assert done(client, wid, RunStatus.COMPLETED).output == sum(range(52))
    browser.get(f"{dash.url}/runs/{wid}")
    links = browser.find_elements(By.CSS_SELECTOR, ".kind-child .tl-label a")
    assert len(links) == 50
    assert text_of(browser, ".more-children").startswith("and 2 more child runs")
    first = links[0].text
    assert "#" in first  # a child's id: parent-1/child#1
    shot(browser, tmp_path, "run-parent-children")
    links[0].click()
    wait_until(browser, lambda d: text_of(d, "h1") == first, "the child's link led elsewhere")
    assert text_of(browser, "#run-status") == "completed"
    browser.find_element(By.CSS_SELECTOR, ".facts a").click()  # its parent, back
    wait_until(browser, lambda d: text_of(d, "h1") == wid, "the parent's link led elsewhere")


def _row_ids(driver: Any) -> list[str]:
    """The ids of the listed runs, read in one go: the list refreshes itself, and rows
    found one call before they are read may be gone (a stale element)."""
    ids = driver.execute_script(
        "return Array.from(document.querySelectorAll('#runs-body tr[data-run-id]'))"
        ".map(r => r.getAttribute('data-run-id'))"
    )
    return [str(i) for i in ids]


def test_older_runs_follow_the_refreshed_list(dash: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        old = [client.start("greet", n, workflow_id=f"run-{n:03d}") for n in range(55)]
        for wid in old:
            done(client, wid)
        browser.get(dash.url + "/runs")
        first = _row_ids(browser)
        assert len(first) == 50 and first[0] == "run-054"
        assert not browser.find_elements(By.ID, "newest")  # on the newest page already
        new = [client.start("greet", n, workflow_id=f"new-{n}") for n in range(5)]
        for wid in new:
            done(client, wid)
    wait_until(browser, lambda d: _row_ids(d)[0].startswith("new-"), "the list never refreshed")
    wait_until(browser, lambda d: len(set(_row_ids(d)) & set(new)) == 5, "not every new run")
    page1 = _row_ids(browser)
    browser.find_element(By.ID, "older").click()
    wait_until(browser, lambda d: "cursor=" in d.current_url, "no second page")
    page2 = _row_ids(browser)
    assert page2[0] == "run-009" and set(old) <= set(page1) | set(page2)  # none skipped
    shot(browser, tmp_path, "runs-older")
    browser.find_element(By.ID, "newest").click()
    wait_until(browser, lambda d: d.current_url == dash.url + "/runs", "no way back")
    assert _row_ids(browser)[0].startswith("new-")


def test_a_token_or_the_sign_in_form_keeps_an_encoded_id(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db = f"sqlite:///{tmp_path}/t.db"
    tokens = {}
    for scope in ("read", "write"):
        made = tether(tmp_path, db, "tokens", "create", "--scope", scope)
        assert made.returncode == 0, made.stderr
        tokens[scope] = made.stdout.strip()
    token = tokens["read"]
    served = start(tmp_path, db, flows=FLOWS)
    try:
        with Client(served.url, tokens["write"]) as client:
            for wid in ("pct%2Fenc", "q?x=1#frag", "a/b"):
                assert client.start("greet", 1, workflow_id=wid) == wid
            assert client.start("greet", 1, workflow_id="..") == ".."
        for wid in ("pct%2Fenc", "q?x=1#frag", "a/b"):
            browser.delete_all_cookies()
            page = f"{served.url}/runs/{quote(wid, safe='')}"
            browser.get(f"{page}?token={token}")
            wait_until(browser, lambda d, w=wid: text_of(d, "h1") == w, f"?token= lost {wid!r}")
            assert browser.current_url == page  # the token left the address, the id kept
            browser.delete_all_cookies()
            browser.get(page)
            browser.find_element(By.ID, "token").send_keys(token + "\n")  # the sign-in page
            wait_until(browser, lambda d, w=wid: text_of(d, "h1") == w, f"sign-in lost {wid!r}")
        browser.delete_all_cookies()
        browser.get(f"{served.url}/run?id=..")
        browser.find_element(By.ID, "token").send_keys(token + "\n")
        wait_until(browser, lambda d: text_of(d, "h1") == "..", "signing in lost ?id=..")
        shot(browser, tmp_path, "run-signed-in-dotdot")
    finally:
        served.stop()
