"""Signing in to the dashboard in Chromium from an address that answers no GET: the
sign-in form shown again after a mistyped token, and a run's form sent after the
browser lost its token. Signing in there redirected to that POST-only address, and the
reader was left on the API's JSON error ("GET is not allowed")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .conftest import make_token
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

WID = "batch/7 ünï"  # a '/' and non-ASCII: the way back keeps the id whole


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[tuple[Served, str]]:
    """`tether serve` with a write token (so every page asks for one), a parked run."""
    db = f"sqlite:///{tmp_path}/t.db"
    token = make_token(tmp_path, db, "write")
    s = start(tmp_path, db)
    with Client(s.url, token) as client:
        client.start("waits", workflow_id=WID)
        done(client, WID, RunStatus.WAITING)
    yield s, token
    s.stop()


def _sign_in(driver: Any, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token + "\n")


def test_a_mistyped_token_then_the_right_one_reaches_the_page_asked_for(
    signed: tuple[Served, str], browser: Any, tmp_path: Path
) -> None:
    served, token = signed
    page = f"{served.url}/runs/{quote(WID, safe='')}"
    browser.get(page)
    _sign_in(browser, "tth_not-a-token")
    wait_until(browser, lambda d: "unknown or revoked" in text_of(d, ".problem"), "no problem")
    shot(browser, tmp_path, "sign-in-mistyped")
    _sign_in(browser, token)  # from the form shown again, at /-/login
    wait_until(browser, lambda d: text_of(d, "h1") == WID, "signing in did not reach the run")
    assert browser.current_url == page


def test_a_form_sent_after_the_token_was_lost_signs_in_back_to_the_run(
    signed: tuple[Served, str], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    served, token = signed
    page = f"{served.url}/runs/{quote(WID, safe='')}"
    browser.get(f"{page}?token={token}")
    wait_until(browser, lambda d: text_of(d, "h1") == WID, "?token= did not sign in")
    browser.delete_cookie("tether_token")  # expired, or cleared, while the page was open
    browser.find_element(By.ID, "reason").send_keys("not needed")
    browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "token"), "no sign-in form")
    shot(browser, tmp_path, "sign-in-after-form")
    _sign_in(browser, token)
    wait_until(browser, lambda d: text_of(d, "h1") == WID, "signing in did not reach the run")
    assert browser.current_url == page
    assert text_of(browser, "#run-status") == "waiting"  # the form was not sent on its own


def test_the_sign_in_token_in_an_address_is_kept_out_of_the_access_log(tmp_path: Path) -> None:
    """`tether serve` says "add ?token=TOKEN once"; the access log wrote the request
    line as it came, the admin's secret with it."""
    import httpx

    db = f"sqlite:///{tmp_path}/t.db"
    token = make_token(tmp_path, db, "write")
    served = start(tmp_path, db)
    try:
        answer = httpx.get(f"{served.url}/?token={token}&x=1", follow_redirects=False)
        assert answer.status_code in (302, 303, 307)  # signed in: on to the page, cookie set
        assert "set-cookie" in answer.headers
    finally:
        log = served.stop()
    assert "GET /?token=[hidden]&x=1" in log
    assert token not in log
