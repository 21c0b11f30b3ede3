"""The dashboard as a new user met it, in Chromium: a run page that stayed stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixtures: a headless Chromium, a served App
dash = test_dashboard.dash
CANCEL = 'form[action$="/cancel"]'


def test_the_cancel_form_goes_when_the_open_page_sees_the_run_end(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    # it stayed, under "(the run has ended)", offering to cancel a completed run
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("approve")
        done(client, wid, RunStatus.WAITING)
        browser.get(f"{dash.url}/runs/{wid}")
        assert browser.find_elements(By.CSS_SELECTOR, CANCEL)
        wait_until(browser, lambda d: text_of(d, "#live") == "live", "the stream never opened")
        assert client.signal(wid, "approve", "yes")
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed",
                   "the page never showed the run completed")  # fmt: skip
        wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, CANCEL),
                   "the cancel form outlived the run")  # fmt: skip
        assert "Cancel" not in text_of(browser, "main")
        shot(browser, tmp_path, "run-ended-no-cancel")


def test_a_cursor_the_dashboard_never_gave_is_said_so_not_shown_as_a_later_page(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    # it showed the newest runs under "← Newest runs", as if they were an older page
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("greet", "Ada")
        done(client, wid)
    browser.get(f"{dash.url}/runs?cursor=WyJidWxrLTAxNC")  # a link cut short
    assert "not one the dashboard gave" in text_of(browser, ".problem")
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-run-id="{wid}"]')
    assert not browser.find_elements(By.ID, "newest")
    shot(browser, tmp_path, "runs-bad-cursor")
