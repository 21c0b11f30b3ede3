"""A run's page in Chromium, telling the truth: about a run whose owner died, about
who drives a run a signal woke, and an event's detail as it was recorded; and the
page's frame: the time-zone switch, and the runs list on a narrow screen."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from . import test_dashboard
from ._serve import Served, environment, start
from .test_dashboard import WAIT, done, shot, text_of, wait_until
from .test_dashboard_ids import FLOWS

browser = test_dashboard.browser  # the fixture: a headless Chromium

ORPHAN = "from flows import app, slow\napp.run(slow, workflow_id='orphan-1')\n"


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def test_a_run_whose_owner_died_is_driven_by_nobody(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    (tmp_path / "orphan.py").write_text(ORPHAN)
    proc = subprocess.Popen([sys.executable, "orphan.py"], cwd=tmp_path,
                            env=environment(tmp_path, dash.db))  # fmt: skip
    try:
        with Client(dash.url) as client:

            def in_long_step() -> bool:
                try:
                    return "long" in client.get_record("orphan-1").steps
                except ApiError:
                    return False  # not started yet

            eventually_sync(in_long_step, timeout=WAIT)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean exit: its claim lapses in a second
        proc.wait(WAIT)
    page = f"{dash.url}/runs/orphan-1"
    eventually_sync(lambda: "nobody since" in httpx.get(page).text, timeout=WAIT)
    browser.get(page)
    assert text_of(browser, "#run-status") == "running"
    assert "owner gone" in text_of(browser, ".facts")
    driver = text_of(browser, "#run-driver")
    assert "nobody since" in driver and "a worker or the next run takes it over" in driver
    steps = {r.get_attribute("data-name"): r.get_attribute("data-status")
             for r in browser.find_elements(By.CSS_SELECTOR, '.tl-row[data-kind="step"]')}  # fmt: skip
    assert steps == {"first": "completed", "long": "interrupted"}  # as `tether runs show` says
    shot(browser, tmp_path, "run-orphan")


@contextlib.contextmanager
def _parked_then_bare(tmp_path: Path, workflow: str, wid: str) -> Iterator[Served]:
    """Run `workflow` until it waits, then serve its database alone (no workflow
    registered: nothing will drive the run a form wakes)."""
    db = f"sqlite:///{tmp_path}/t.db"
    served = start(tmp_path, db, flows=FLOWS)
    try:
        with Client(served.url) as client:
            done(client, client.start(workflow, workflow_id=wid), RunStatus.WAITING)
    finally:
        served.stop()
    bare = start(tmp_path, db, flows=None)
    try:
        yield bare
    finally:
        bare.stop()


@pytest.mark.parametrize(
    ("workflow", "form", "head"),
    [
        ("approve", "signal", "Signal sent"),
        ("tokened", "token", "Token completed"),
        ("hooked", "event", "Event sent"),
    ],
)
def test_a_form_that_wakes_a_run_says_when_nothing_will_drive_it(
    tmp_path: Path, browser: Any, workflow: str, form: str, head: str
) -> None:
    # a signal said so first; a completed token or a sent event just said it was done
    from selenium.webdriver.common.by import By

    wid = f"{form}-1"
    with _parked_then_bare(tmp_path, workflow, wid) as bare:
        browser.get(f"{bare.url}/runs/{wid}")
        browser.find_element(By.CSS_SELECTOR, f"#waits form.act-{form} button").click()
        wait_until(browser, lambda d: "done=" in d.current_url, "no answer to the form")
        note = text_of(browser, ".done")
        assert note.startswith(f"{head}: the run woke, but nothing drives it now"), note
        assert f"tether runs resume {wid} --app FILE.py:app" in note
        assert "stuck" in (browser.find_element(By.CSS_SELECTOR, ".done").get_attribute("class"))
        shot(browser, tmp_path, f"run-{form}-nobody")


def test_an_events_detail_shows_its_characters(dash: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("noted")
        record = done(client, wid, RunStatus.WAITING)
    note = next(e for e in record.events if e.type == "note")
    browser.get(f"{dash.url}/runs/{wid}")
    cell = browser.find_element(By.CSS_SELECTOR, f'#events-body tr[data-seq="{note.seq}"] .detail')
    as_script = browser.execute_script("return JSON.stringify(arguments[0])", note.detail)
    assert (
        cell.text == as_script == json.dumps(note.detail, ensure_ascii=False, separators=(",", ":"))
    )
    assert "<b>café</b>" in cell.text and "\\u" not in cell.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#events-body b")  # text, not markup
    shot(browser, tmp_path, "run-event-detail")


def test_a_reader_in_utc_gets_no_switch_to_utc(dash: Served, browser: Any, tmp_path: Path) -> None:
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Etc/UTC"})
    browser.get(dash.url + "/runs")
    wait_until(browser, lambda d: d.execute_script("return document.readyState") == "complete",
               "the page never loaded")  # fmt: skip
    assert text_of(browser, "footer") == "Times are in UTC · API"
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Paris"})
    browser.get(dash.url + "/runs")
    wait_until(browser, lambda d: "show UTC" in text_of(d, "footer"), "no switch in Paris")
    assert text_of(browser, "footer").startswith("Times are in Europe/Paris")


def test_run_ids_stay_readable_on_a_narrow_screen(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        for wid in ("order-0012345", "very-long-id-" + "x" * 200):
            done(client, client.start("greet", 1, workflow_id=wid))
    browser.set_window_size(400, 900)
    browser.get(dash.url + "/runs")
    link = browser.find_element(By.CSS_SELECTOR, 'tr[data-run-id="order-0012345"] a')
    lines = browser.execute_script("return arguments[0].getClientRects().length", link)
    assert lines == 1, "a 13-character id wrapped"
    shot(browser, tmp_path, "runs-narrow", width=400)


TIMED = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def naps(wf: tether.Workflow) -> None:
        await wf.sleep(3600)

    @app.workflow
    async def gated(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go", timeout=3600)
    """
)


def _wait_item(page: str, kind: str) -> str:
    """The text of the run page's one pending wait of `kind`, its markup stripped."""
    (item,) = re.findall(rf'<li class="card wait" data-wait-kind="{kind}">(.*?)</li>', page, re.S)
    return re.sub(r"<[^>]+>", "", item)


def test_a_pending_timer_says_when_it_fires_and_a_wait_when_it_times_out(
    tmp_path: Path,
) -> None:
    # every wait said "times out" at its due time, a timer too: a timer does not time
    # out, it fires then
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=TIMED)
    try:
        with Client(served.url) as client:
            for wid, workflow in (("nap-1", "naps"), ("gate-1", "gated")):
                client.start(workflow, workflow_id=wid)
                done(client, wid, RunStatus.WAITING)
        timer = _wait_item(httpx.get(f"{served.url}/runs/nap-1").text, "timer")
        signal_ = _wait_item(httpx.get(f"{served.url}/runs/gate-1").text, "signal")
    finally:
        served.stop()
    assert re.search(r"since [-\d: ]+, fires [-\d: ]+$", timer.strip().split("\n")[0]), timer
    assert "times out" not in timer
    assert re.search(r"since [-\d: ]+, times out [-\d: ]+$", signal_.strip().split("\n")[0]), (
        signal_
    )
