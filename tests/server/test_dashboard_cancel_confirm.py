"""Cancelling from a run's page asks first: the button cancelled at once, so one
misclick cancelled a run days into its work. The form leads to a page that says
whether compensation will run; only that page's form (``confirm=1``, CSRF-checked
as every form) cancels. No JavaScript is needed for either step."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import _csrf, done, shot, text_of, wait_until
from .test_dashboard_compensate import FLOWS

browser = test_dashboard.browser  # the fixture: a headless Chromium
dash = test_dashboard.dash  # `tether serve` of flows whose "approve" waits for a signal


def test_a_cancel_post_without_the_confirmation_cancels_nothing(dash: Served) -> None:
    with Client(dash.url) as client, httpx.Client(base_url=dash.url, timeout=60) as web:
        wid = client.start("approve")
        done(client, wid, RunStatus.WAITING)
        csrf = _csrf(web.get(f"/runs/{wid}"))
        url, origin = f"/runs/{wid}/cancel", {"Origin": dash.url}
        asked = web.post(url, data={"csrf": csrf, "reason": "oops"}, headers=origin)
        assert asked.status_code == 200, asked.text
        assert "Cancel this run?" in asked.text and 'name="confirm" value="1"' in asked.text
        assert re.search(r"<strong>will not run</strong>", asked.text), asked.text
        with_undo = web.post(url, data={"csrf": csrf, "compensate": "1"}, headers=origin)
        assert re.search(r"<strong>will run</strong>", with_undo.text), with_undo.text
        assert 'name="compensate" value="1"' in with_undo.text  # carried to the last step
        forged = web.post(url, data={"confirm": "1", "reason": "x"}, headers=origin)
        assert forged.status_code == 403  # the confirmation is no way around the CSRF check
        elsewhere = web.post(url, data={"csrf": csrf, "confirm": "1"},
                             headers={"Origin": "https://evil.example"})  # fmt: skip
        assert elsewhere.status_code == 403
        assert client.get_record(wid).status is RunStatus.WAITING  # nothing got through
        sent = web.post(url, data={"csrf": csrf, "reason": "oops", "confirm": "1"},
                        headers=origin)  # fmt: skip
        assert sent.status_code == 303 and sent.headers["location"].endswith("?done=cancelled")
        assert done(client, wid).status is RunStatus.CANCELLED


def test_the_confirm_page_of_a_run_that_ended_offers_nothing_to_confirm(dash: Served) -> None:
    with Client(dash.url) as client, httpx.Client(base_url=dash.url, timeout=60) as web:
        wid = client.start("approve")
        done(client, wid, RunStatus.WAITING)
        csrf = _csrf(web.get(f"/runs/{wid}"))
        client.cancel(wid)  # by someone else, while this page was open
        done(client, wid, RunStatus.CANCELLED)
        asked = web.post(f"/runs/{wid}/cancel", data={"csrf": csrf}, headers={"Origin": dash.url})
        assert asked.status_code == 200
        assert "already ended (cancelled)" in asked.text and 'name="confirm"' not in asked.text


def _h6(browser: Any, tmp_path: Path, name: str, width: int = 1280) -> None:
    shutil.copy(shot(browser, tmp_path, name, width), f"/tmp/h6_{name}.png")


def test_cancelling_in_chromium_asks_first_and_says_whether_compensation_runs(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    try:
        with Client(served.url) as client:
            wid = client.start("reserves")
            done(client, wid, RunStatus.WAITING)
            page = f"{served.url}/runs/{wid}"
            browser.get(page)
            browser.find_element(By.ID, "reason").send_keys("misclick")
            browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
            wait_until(browser, lambda d: d.find_elements(By.ID, "confirm-cancel"), "no confirm")
            _h6(browser, tmp_path, "confirm-no-undo")
            _h6(browser, tmp_path, "confirm-no-undo-390", width=390)
            assert text_of(browser, "#confirm-compensate").startswith("will not run")
            assert text_of(browser, "#confirm-reason") == "misclick"
            assert client.get_record(wid).status is RunStatus.WAITING  # asked, not done
            browser.find_element(By.ID, "keep-running").click()
            wait_until(browser, lambda d: d.current_url == page, "no way back to the run")
            assert text_of(browser, "#run-status") == "waiting"

            browser.find_element(By.ID, "reason").send_keys("not needed")
            browser.find_element(By.CSS_SELECTOR, "#cancel input[name=compensate]").click()
            browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
            wait_until(browser, lambda d: d.find_elements(By.ID, "confirm-cancel"), "no confirm")
            _h6(browser, tmp_path, "confirm-undo")
            assert text_of(browser, "#confirm-compensate").startswith("will run")
            browser.find_element(By.CSS_SELECTOR, "#confirm-cancel button").click()
            wait_until(browser, lambda d: "done=cancelled-compensate" in d.current_url, "no answer")
            _h6(browser, tmp_path, "cancelled-undo")
            assert "with compensation" in text_of(browser, "p.done")
            done(client, wid, RunStatus.COMPENSATED)
            assert (tmp_path / f"released-{wid}").read_text() == "released"
    finally:
        served.stop()
