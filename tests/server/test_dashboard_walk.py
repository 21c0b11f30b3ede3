"""A walk of the dashboard as a new reader: a browser signed in with a ``read`` token
that must act on a waiting run had no way to the sign-in page (only ``?token=`` typed
into the address), and the sign-in page's own address answered a reload with the
API's JSON 405 ("GET is not allowed at /-/login")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .conftest import make_token
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

WID = "needs-approval"


def _served(tmp_path: Path) -> tuple[Served, dict[str, str]]:
    db = f"sqlite:///{tmp_path}/t.db"
    tokens = {scope: make_token(tmp_path, db, scope) for scope in ("read", "write")}
    served = start(tmp_path, db)
    with Client(served.url, tokens["write"]) as client:
        client.start("waits", workflow_id=WID)
        done(client, WID, RunStatus.WAITING)
    return served, tokens


def test_a_read_token_browser_signs_in_with_a_write_token_from_the_page_and_acts(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    served, tokens = _served(tmp_path)
    try:
        page = f"{served.url}/runs/{WID}"
        browser.get(f"{page}?token={tokens['read']}")
        assert "needs a token of scope write" in text_of(browser, "#waits")
        browser.find_element(By.CSS_SELECTOR, "#waits a.sign-in").click()
        wait_until(browser, lambda d: d.find_elements(By.ID, "token"), "no sign-in page")
        assert not browser.find_elements(By.CSS_SELECTOR, ".problem")  # nothing went wrong
        shot(browser, tmp_path, "walk-sign-in-to-act")
        browser.find_element(By.ID, "token").send_keys(tokens["write"] + "\n")
        wait_until(browser, lambda d: d.current_url == page, "signing in left the run's page")
        browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal button").click()
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed", "not resumed")
    finally:
        served.stop()


def test_the_sign_in_address_loaded_again_is_the_sign_in_page(tmp_path: Path) -> None:
    served, _ = _served(tmp_path)
    try:
        html = {"Accept": "text/html"}
        page = httpx.get(f"{served.url}/-/login?next=/runs/{WID}", headers=html, timeout=60)
        assert page.status_code == 200, page.text
        assert 'id="token"' in page.text and f'name="next" value="/runs/{WID}"' in page.text
        away = httpx.get(f"{served.url}/-/login?next=//evil.example/x", headers=html, timeout=60)
        assert 'name="next" value="/"' in away.text  # no sign-in that leads off the site
    finally:
        served.stop()
