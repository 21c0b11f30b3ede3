"""A second walk of the dashboard: signing out. A browser signed in had no way out but
clearing its cookies by hand; and a reader with a ``read`` token found no Cancel
section on a run's page, nor a word of why (signals said "needs a token of scope
write"). Signing out is a form like the others (CSRF), and a GET never signs out (a
prefetch of the link would)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start, tether
from .conftest import make_token
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

WID = "needs-approval"
SHOTS = Path("/tmp/dash_shots2")
HTML = {"Accept": "text/html"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    """`tether serve` with a read and a write token, and a run waiting for a signal."""
    db = f"sqlite:///{tmp_path}/t.db"
    tokens = {scope: make_token(tmp_path, db, scope) for scope in ("read", "write")}
    s = start(tmp_path, db)
    with Client(s.url, tokens["write"]) as client:
        client.start("waits", workflow_id=WID)
        done(client, WID, RunStatus.WAITING)
    yield s, tokens
    s.stop()


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'action="/-/logout"[^>]*><input type="hidden" name="csrf" value="([^"]+)"',
                      page.text)  # fmt: skip
    assert found is not None, "no sign-out form on the page"
    return found[1]


def test_a_browser_signs_in_then_out_and_pages_ask_to_sign_in_again(
    served: tuple[Served, dict[str, str]], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    s, tokens = served
    SHOTS.mkdir(exist_ok=True)
    page = f"{s.url}/runs/{WID}"
    browser.get(f"{s.url}/-/login?next=/runs/{WID}")
    browser.find_element(By.ID, "token").send_keys(tokens["read"] + "\n")
    wait_until(browser, lambda d: d.current_url == page, "signing in left the run's page")
    assert browser.get_cookie("tether_token") is not None
    # a read token: the Cancel section says why it offers no form
    assert "Cancelling this run needs a token of scope write" in text_of(browser, "#cancel")
    assert browser.find_element(By.CSS_SELECTOR, "#cancel a.sign-in")
    shot(browser, SHOTS, "walk2-read-signed-in")
    browser.get(f"{s.url}/-/logout")  # as a prefetch would: it signs no one out
    assert "Signing out forgets it" in text_of(browser, "main")
    assert browser.get_cookie("tether_token") is not None
    shot(browser, SHOTS, "walk2-sign-out-page")
    browser.get(page)
    browser.find_element(By.CSS_SELECTOR, "header form.sign-out button").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "token"), "no sign-in page")
    assert browser.current_url == f"{s.url}/-/login?out=1"
    assert "You are signed out" in text_of(browser, "p.done")
    assert browser.get_cookie("tether_token") is None
    assert browser.get_cookie("tether_csrf") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "form.sign-out")
    shot(browser, SHOTS, "walk2-signed-out")
    browser.get(page)
    assert browser.find_element(By.ID, "token")  # the run's page asks to sign in
    assert "Sign in" in text_of(browser, "h1")
    shot(browser, SHOTS, "walk2-after-sign-out-run-page")


def test_the_sign_out_form_needs_its_pages_csrf_token_and_the_same_origin(
    served: tuple[Served, dict[str, str]],
) -> None:
    s, tokens = served
    with httpx.Client(base_url=s.url, follow_redirects=True, timeout=60) as web:
        run = web.get(f"/runs/{WID}?token={tokens['write']}", headers=HTML)
        csrf = _csrf(run)
        web.follow_redirects = False
        for data, headers in (({}, {}), ({"csrf": csrf + "x"}, {}),
                              ({"csrf": csrf}, {"Origin": "https://evil.example"})):  # fmt: skip
            refused = web.post("/-/logout", data=data, headers=headers)
            assert refused.status_code == 403, refused.text
            assert "set-cookie" not in refused.headers
            assert "Reload the page you signed out from" in refused.text
        assert web.get(f"/runs/{WID}", headers=HTML).status_code == 200  # still signed in
        out = web.post("/-/logout", data={"csrf": csrf}, headers={"Origin": s.url})
        assert out.status_code == 303 and out.headers["location"] == "/-/login?out=1"
        gone = [c for c in out.headers.get_list("set-cookie") if "Max-Age=0" in c]
        assert len(gone) == 2 and all("HttpOnly" in c and "Path=/" in c for c in gone)
        assert "tether_token" not in web.cookies
        again = web.get(f"/runs/{WID}", headers=HTML)
        assert again.status_code == 401 and 'id="token"' in again.text


def test_a_get_of_the_sign_out_address_signs_no_one_out_and_offers_the_button(
    served: tuple[Served, dict[str, str]],
) -> None:
    s, tokens = served
    with httpx.Client(base_url=s.url, follow_redirects=True, timeout=60) as web:
        web.get(f"/runs?token={tokens['read']}", headers=HTML)
        offered = web.get("/-/logout", headers=HTML)
        assert offered.status_code == 200 and "Signing out forgets it" in offered.text
        assert "set-cookie" not in offered.headers  # the token cookie kept
        run = web.get(f"/runs/{WID}", headers=HTML)
        assert run.status_code == 200  # still signed in
        assert run.text.count('name="csrf"') == 1  # no form to act: signing out alone
        out = web.post("/-/logout", data={"csrf": web.cookies["tether_csrf"]})
        assert out.status_code == 200 and "You are signed out" in out.text
    fresh = httpx.get(f"{s.url}/-/logout", headers=HTML, timeout=60)
    assert fresh.status_code == 200 and "not signed in" in fresh.text
    assert 'action="/-/logout"' not in fresh.text  # nothing to sign out of


def test_a_revoked_tokens_cookie_can_still_be_signed_out(
    served: tuple[Served, dict[str, str]], tmp_path: Path
) -> None:
    s, tokens = served
    with httpx.Client(base_url=s.url, follow_redirects=True, timeout=60) as web:
        web.get(f"/runs?token={tokens['read']}", headers=HTML)
        revoked = tether(tmp_path, s.db, "tokens", "revoke", "read")
        assert revoked.returncode == 0, revoked.stderr
        assert web.get("/runs", headers=HTML).status_code == 401
        offered = web.get("/-/logout", headers=HTML)
        assert offered.status_code == 200 and "Signing out forgets it" in offered.text
        out = web.post("/-/logout", data={"csrf": web.cookies["tether_csrf"]})
        assert "You are signed out" in out.text and "tether_token" not in web.cookies


def test_no_sign_out_button_for_a_browser_let_in_without_a_cookie(tmp_path: Path) -> None:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db")  # no token: open to this machine
    try:
        page = httpx.get(f"{s.url}/runs", headers=HTML, timeout=60)
        assert page.status_code == 200 and "scope: admin" in page.text
        assert 'action="/-/logout"' not in page.text
    finally:
        s.stop()


def test_a_write_token_gets_the_cancel_form_not_the_note(
    served: tuple[Served, dict[str, str]],
) -> None:
    s, tokens = served
    with httpx.Client(base_url=s.url, follow_redirects=True, timeout=60) as web:
        page = web.get(f"/runs/{WID}?token={tokens['write']}", headers=HTML)
        assert "Cancel this run" in page.text and "Cancelling this run needs" not in page.text
        assert 'action="/-/logout"' in page.text
