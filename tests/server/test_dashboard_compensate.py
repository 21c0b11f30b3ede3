"""Cancelling a run from its page in Chromium, with and without compensation: the
form offered no "compensate" although the API and `App.cancel` do, so a run whose
completed steps had to be undone could only be cancelled from the page as it was."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

FLOWS = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    def release(run_id: str) -> None:  # the undo leaves a mark the test can see
        Path(f"released-{run_id}").write_text("released")

    @app.workflow
    async def reserves(wf: tether.Workflow) -> object:
        await wf.step("reserve", lambda: wf.workflow_id, compensate=release)
        return await wf.wait_for_signal("go")

    def refund(run_id: str) -> None:  # fails until the test says the service is back
        if not Path("refunds-up").exists():
            raise ConnectionError("refund service unavailable")
        Path(f"refunded-{run_id}").write_text("refunded")

    @app.workflow
    async def declines(wf: tether.Workflow) -> None:
        await wf.step("charge", lambda: wf.workflow_id, compensate=refund)
        raise RuntimeError("card declined")
    """
)


def _cancel_from_page(browser: Any, url: str, compensate: bool) -> str:
    """Cancel the run at `url` with its page's form; the note the answer shows."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    box = browser.find_element(By.CSS_SELECTOR, "section.danger input[name=compensate]")
    assert not box.is_selected(), "compensation is asked for only when checked"
    browser.find_element(By.ID, "reason").send_keys("not needed")
    if compensate:
        box.click()
    browser.find_element(By.CSS_SELECTOR, "section.danger button").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "confirm-cancel"), "no confirm page")
    browser.find_element(By.CSS_SELECTOR, "#confirm-cancel button").click()
    wait_until(browser, lambda d: "done=cancelled" in d.current_url, "no answer to cancel")
    return text_of(browser, "p.done")


def test_cancelling_with_compensate_checked_undoes_the_completed_steps(
    browser: Any, tmp_path: Path
) -> None:
    dash = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)  # the undo's file here
    try:
        _cancel_both(dash, browser, tmp_path)
    finally:
        dash.stop()


def _cancel_both(dash: Served, browser: Any, tmp_path: Path) -> None:
    """Two runs past their step: one cancelled with compensation, one without."""
    with Client(dash.url) as client:
        undo, keep = client.start("reserves"), client.start("reserves")
        for wid in (undo, keep):
            done(client, wid, RunStatus.WAITING)
        browser.get(f"{dash.url}/runs/{undo}")
        shot(browser, tmp_path, "cancel-compensate-form")
        shot(browser, tmp_path, "cancel-compensate-form-390", width=390)
        browser.set_window_size(1280, 900)
        note = _cancel_from_page(browser, f"{dash.url}/runs/{undo}", compensate=True)
        shot(browser, tmp_path, "cancel-compensate-done")
        assert "with compensation" in note, note
        done(client, undo, RunStatus.COMPENSATED)  # `cancelled` first, then undone
        assert (tmp_path / f"released-{undo}").read_text() == "released"

        note = _cancel_from_page(browser, f"{dash.url}/runs/{keep}", compensate=False)
        assert note == "Cancellation requested.", note
        assert done(client, keep).status is RunStatus.CANCELLED  # ended: no undo to come
        assert not (tmp_path / f"released-{keep}").exists()


def test_a_failed_undo_is_retried_from_the_page(browser: Any, tmp_path: Path) -> None:
    """A compensation_failed run's page offers "Retry compensations"; a run in any other
    status does not. Pressed once the refund service is back, the run is compensated."""
    from selenium.webdriver.common.by import By

    dash = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    try:
        with Client(dash.url) as client:
            wid = client.start("declines")
            done(client, wid, RunStatus.COMPENSATION_FAILED)
            other = client.start("reserves")
            done(client, other, RunStatus.WAITING)
            browser.get(f"{dash.url}/runs/{other}")
            assert not browser.find_elements(By.ID, "h-retry-undo")
            browser.get(f"{dash.url}/runs/{wid}")
            shot(browser, tmp_path, "retry-compensations-form")
            (tmp_path / "refunds-up").touch()
            browser.find_element(By.CSS_SELECTOR, "#retry-undo button").click()
            wait_until(browser, lambda d: "done=undo-retried" in d.current_url, "no answer")
            note = text_of(browser, "p.done")
            assert note.startswith("Compensations retried"), note
            done(client, wid, RunStatus.COMPENSATED)
            assert (tmp_path / f"refunded-{wid}").read_text() == "refunded"
            browser.get(f"{dash.url}/runs/{wid}")
            shot(browser, tmp_path, "retry-compensations-done")
            assert not browser.find_elements(By.ID, "h-retry-undo")  # nothing left to retry
    finally:
        dash.stop()
