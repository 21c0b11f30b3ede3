"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against a real `tether serve`.

Each test saves a screenshot of the pages it visits under its tmp_path and copies
it to ``screenshots/`` at the checkout's root (ignored by git), to be looked at.
Without Chromium the browser tests skip, unless $TETHER_REQUIRE_BROWSER is set
(as CI sets it), when they fail. The refusals of the forms (CSRF, another
origin, a read-only token) are checked with plain HTTP requests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import Client, RunRecord, RunStatus
from tether.testing import eventually_sync

from ._serve import TETHER, Served, environment, start, tether

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
WAIT = 60  # seconds: a bound for a hang (a loaded machine), never a measure of speed

FLOWS = textwrap.dedent(
    """
    import os

    import tether
    from tether import ai

    prices = ai.Prices({
        "demo:small": {"input_per_million": 0.40, "output_per_million": 1.60},
        "demo:big": {"input_per_million": 3.00, "output_per_million": 15.00},
    })
    model = ai.FakeModel(lambda name, request: f"An answer from {name}, in a few words.")
    app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

    @app.workflow
    async def greet(wf: tether.Workflow, name: str) -> str:
        return await wf.step("hello", lambda: "hello " + name)

    @app.workflow
    async def approve(wf: tether.Workflow) -> object:
        await wf.step("draft", lambda: "draft 1")
        verdict = await wf.wait_for_signal("approve")
        await wf.step("publish", lambda: "published")
        return verdict

    @app.workflow
    async def triage(wf: tether.Workflow, tickets: list[str]) -> list[str]:
        answers = []
        for ticket in tickets:
            reply = await wf.ai.generate_text("demo:small", prompt=ticket)
            answers.append(reply.text)
        summary = await wf.ai.generate_text("demo:big", prompt="Summarise: " + " ".join(tickets))
        return [*answers, summary.text]

    @app.workflow
    async def local(wf: tether.Workflow) -> str:
        return (await wf.ai.generate_text("demo:local", prompt="hi")).text  # no price known

    app.queue("slow", concurrency=2)
    """
)


def _browser_or_skip() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.environ.get("TETHER_REQUIRE_BROWSER"):
        pytest.fail(f"TETHER_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip(
        f"no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver); "
        "set TETHER_REQUIRE_BROWSER=1 to fail instead of skipping"
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium of its own for each test (so no cookie crosses tests)."""
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--force-color-profile=srgb"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    """`tether serve` of the flows above, with no API token (open to this machine)."""
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def shot(driver: Any, folder: Path, name: str, width: int = 1280) -> Path:
    """A screenshot of the whole page (the window grown to its height)."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(int(height) + 120, 600), 4000))
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def wait_until(driver: Any, check: Any, message: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def tolerant(d: Any) -> Any:
        try:
            return check(d)
        except WebDriverException as exc:  # an element of the page being left, read as
            if "does not belong to the document" in str(exc):  # the next one loads
                return False
            raise

    # a live part of the page may be swapped between finding an element and reading it
    waiting = WebDriverWait(
        driver, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return waiting.until(tolerant, message)


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def done(client: Client, wid: str, status: RunStatus | None = None) -> RunRecord:
    def check() -> RunRecord:
        rec = client.get_record(wid)
        assert rec.status is status if status else rec.status.terminal, rec.status
        return rec

    return eventually_sync(check, timeout=WAIT)


def test_the_runs_page_lists_runs_and_shows_new_ones_live(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        first = client.start("greet", "Ada", tags=["demo"])
        done(client, first)
        browser.get(dash.url + "/")  # the home page is the runs page
        assert browser.current_url == dash.url + "/runs"
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{first}"]')
        assert "greet" in row.text and "completed" in row.text and "demo" in row.text
        assert text_of(browser, '#counts [data-status="completed"] .n') == "1"
        second = client.start("greet", "Bo")
        done(client, second)
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run-id="{second}"]'),
                   "the new run never appeared on the open page")  # fmt: skip
        wait_until(browser, lambda d: text_of(d, '#counts [data-status="completed"] .n') == "2",
                   "the live count never reached 2")  # fmt: skip
        shot(browser, tmp_path, "runs")
        browser.find_element(By.ID, "f-q").send_keys(first + "\n")  # search by id: to the run
        wait_until(browser, lambda d: d.current_url.endswith(f"/runs/{first}"), "no run page")
        assert text_of(browser, "#run-status") == "completed"
        browser.get(dash.url + "/runs?status=failed")
        assert "No runs match these filters" in text_of(browser, "#runs-body")


def _parked(client: Client) -> str:
    wid = client.start("approve")
    done(client, wid, RunStatus.WAITING)
    return wid


def test_a_run_page_follows_the_run_live_through_its_event_stream(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = _parked(client)
        browser.get(f"{dash.url}/runs/{wid}")
        assert text_of(browser, "#run-status") == "waiting"
        steps = [e.get_attribute("data-name") for e in
                 browser.find_elements(By.CSS_SELECTOR, '.tl-row[data-kind="step"]')]  # fmt: skip
        assert steps == ["draft"]
        assert "approve" in text_of(browser, "#waits")
        wait_until(browser, lambda d: text_of(d, "#live") == "live", "the stream never opened")
        shot(browser, tmp_path, "run-waiting")
        browser.execute_script("window.tetherMark = 'same page'")  # gone if the page reloads
        assert client.signal(wid, "approve", {"ok": True})
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed",
                   "the page never showed the run completed")  # fmt: skip
        publish = '.tl-row[data-kind="step"][data-name="publish"]'
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, publish), "no step")
        assert browser.find_element(By.CSS_SELECTOR, publish).get_attribute("data-status") == (
            "completed"
        )
        assert browser.execute_script("return window.tetherMark") == "same page"
        record = client.get_record(wid)
        wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events-body tr"))
                   == len(record.events), "not every event reached the page")  # fmt: skip
        shown = [int(e.get_attribute("data-seq")) for e in
                 browser.find_elements(By.CSS_SELECTOR, "#events-body tr")]  # fmt: skip
        assert shown == [e.seq for e in record.events]  # each once, in order
        wait_until(browser, lambda d: "ended" in text_of(d, "#live"), "the stream never ended")
        assert '"ok": true' in text_of(browser, "#run-output")
        assert not browser.find_elements(By.CSS_SELECTOR, "#waits form")
        shot(browser, tmp_path, "run-completed")


def test_approving_a_waiting_run_from_its_page(dash: Served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = _parked(client)
        browser.get(f"{dash.url}/runs/{wid}")
        form = browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal")
        form.find_element(By.NAME, "payload").send_keys('{"approved_by": "a browser"}')
        shot(browser, tmp_path, "run-approve-form", width=420)  # a phone-sized screen
        browser.set_window_size(1280, 900)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_until(browser, lambda d: "done=signalled" in d.current_url, "no answer to the form")
        assert text_of(browser, ".done") == (  # the served App drives what it wakes
            "Signal sent: the run woke, and a live process serving workflow 'approve' drives it."
        )
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed",
                   "the run never resumed to its end on the page")  # fmt: skip
        assert done(client, wid).output == {"approved_by": "a browser"}
        shot(browser, tmp_path, "run-approved")


def test_the_cost_shown_is_the_records_and_the_usage_page_charts_it(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("triage", ["The export crashed.", "Where is my invoice?"])
        record = done(client, wid, RunStatus.COMPLETED)
    assert record.usage is not None and record.usage.total.cost_micro_usd > 0
    raw = httpx.get(f"{dash.url}/api/v1/runs/{wid}").json()["usage"]
    browser.get(f"{dash.url}/runs/{wid}")
    cost = browser.find_element(By.ID, "run-cost")
    assert int(cost.get_attribute("data-micro-usd")) == raw["costMicroUsd"]
    assert cost.text.startswith(f"${raw['costMicroUsd'] / 1_000_000:.6f}")
    assert f"{raw['calls']} calls" in cost.text
    per_model = browser.find_element(By.ID, "usage").text
    for name, row in raw["byModel"].items():
        assert name in per_model and f"${row['costMicroUsd'] / 1_000_000:.6f}" in per_model
    shot(browser, tmp_path, "run-ai")
    browser.get(f"{dash.url}/usage")
    total = browser.find_element(By.ID, "usage-total")
    assert int(total.get_attribute("data-micro-usd")) == raw["costMicroUsd"]
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart")
    assert len(charts) == 3
    assert all(c.find_elements(By.CSS_SELECTOR, ".bar") for c in charts)
    assert "demo:big" in charts[1].text and "triage" in charts[2].text
    shot(browser, tmp_path, "usage")


def test_a_cost_no_price_was_known_for_is_unknown_never_zero(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    # it showed $0.000000 (the known part of nothing) beside the unpriced count
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("local")
        done(client, wid, RunStatus.COMPLETED)
    browser.get(f"{dash.url}/runs/{wid}")
    cost = text_of(browser, "#run-cost")
    assert cost.startswith("unknown") and "1 at no known price" in cost and "$0" not in cost
    assert "unknown" in browser.find_element(By.ID, "usage").text
    browser.get(f"{dash.url}/runs")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{wid}"]').text
    assert "unknown" in row and "$0" not in row, row
    browser.get(f"{dash.url}/usage")
    assert text_of(browser, "#usage-total") == "unknown"
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart")
    assert len(charts) == 3
    assert not any("demo:local" in c.text or "$0" in c.text for c in charts[1:])  # no $0 bar
    shot(browser, tmp_path, "usage-unknown")


def test_the_queues_page_shows_queued_jobs_and_live_workers(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    def cell(status: str) -> str:
        return text_of(browser, f'tr[data-queue="slow"] td[data-status="{status}"]')

    with Client(dash.url) as client:
        wid = client.start("greet", "queued", queue="slow")
    browser.get(f"{dash.url}/queues")
    assert (cell("queued"), cell("claimed"), cell("done")) == ("1", "0", "0")
    # the server is a live process, but works no queue: nothing will take the job yet
    workers = 'tr[data-queue="slow"] td[data-workers]'
    assert text_of(browser, workers) == "none: tether worker --app … -q slow"
    wait_until(browser, lambda d: "none" in text_of(d, "#workers td.queues"), "no server row")
    worker = subprocess.Popen(
        [TETHER, "--db", dash.db, "worker", "--app", "flows.py:app", "--queue", "slow"],
        cwd=dash.folder,
        env=environment(dash.folder, dash.db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # the page refreshes itself: the job is done, the worker listed with its heartbeat
        wait_until(browser, lambda d: cell("done") == "1", "the job never showed as done")
        wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, workers).text == "1",
                   "the worker never showed as working the queue")  # fmt: skip
        rows = browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
        assert sorted(r.find_element(By.CSS_SELECTOR, "td.queues").text for r in rows) == [
            "none",  # the server
            "slow",  # the worker
        ]
        assert "greet" in text_of(browser, "#workers") and "ago" in text_of(browser, "#workers")
        shot(browser, tmp_path, "queues")
    finally:
        worker.terminate()
        worker.wait(30)
    with Client(dash.url) as client:
        assert client.get_record(wid).status is RunStatus.COMPLETED


def test_a_token_given_once_becomes_a_cookie_and_the_page_acts_with_it(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    db = f"sqlite:///{tmp_path}/t.db"
    made = tether(tmp_path, db, "tokens", "create", "--scope", "write")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    served = start(tmp_path, db, flows=FLOWS)
    try:
        with Client(served.url, token) as client:
            wid = _parked(client)
        browser.get(f"{served.url}/runs/{wid}")
        assert browser.find_element(By.ID, "token")  # the sign-in page
        shot(browser, tmp_path, "sign-in")
        browser.get(f"{served.url}/runs/{wid}?token={token}")
        assert browser.current_url == f"{served.url}/runs/{wid}"  # the token left the address
        cookie = browser.get_cookie("tether_token")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        wait_until(browser, lambda d: text_of(d, "#live") == "live", "no stream with the cookie")
        browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal button").click()
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed", "not resumed")
    finally:
        served.stop()


# -- the forms' defences, over plain HTTP ----------------------------------------------------


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, "no form on the page"
    return found[1]


def test_a_form_needs_the_csrf_token_its_page_gave_and_the_same_origin(dash: Served) -> None:
    with Client(dash.url) as client, httpx.Client(base_url=dash.url, timeout=60) as web:
        wid = _parked(client)
        page = web.get(f"/runs/{wid}")
        csrf = _csrf(page)
        assert web.cookies.get("tether_csrf") == csrf
        url = f"/runs/{wid}/signal"
        no_token = web.post(url, data={"name": "approve"})
        assert no_token.status_code == 403 and "stale" in no_token.text
        wrong = web.post(url, data={"name": "approve", "csrf": csrf + "x"})
        assert wrong.status_code == 403
        elsewhere = web.post(url, data={"name": "approve", "csrf": csrf},
                             headers={"Origin": "https://evil.example"})  # fmt: skip
        assert elsewhere.status_code == 403 and "another site" in elsewhere.text
        assert client.get_record(wid).status is RunStatus.WAITING  # nothing got through
        ok = web.post(url, data={"name": "approve", "csrf": csrf, "payload": '"yes"'},
                      headers={"Origin": dash.url})  # fmt: skip
        assert ok.status_code == 303 and ok.headers["location"].endswith("?done=signalled")
        assert done(client, wid).output == "yes"


def test_pages_follow_the_token_rules(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    tokens = {}
    for scope in ("read", "write"):
        made = tether(tmp_path, db, "tokens", "create", "--scope", scope)
        assert made.returncode == 0, made.stderr
        tokens[scope] = made.stdout.strip()
    served = start(tmp_path, db, flows=FLOWS)
    try:
        with Client(served.url, tokens["write"]) as client:
            wid = _parked(client)
        anonymous = httpx.get(f"{served.url}/runs/{wid}")
        assert anonymous.status_code == 401 and "Sign in" in anonymous.text
        bad = httpx.get(f"{served.url}/runs?token=nope")
        assert bad.status_code == 401 and "unknown or revoked" in bad.text
        with httpx.Client(base_url=served.url, follow_redirects=True, timeout=60) as reader:
            signed = reader.get(f"/runs/{wid}?token={tokens['read']}")
            assert signed.status_code == 200 and "Sign in" not in signed.text
            # a read token gets no form to act: signing out alone
            assert signed.text.count('name="csrf"') == 1 and "/-/logout" in signed.text
            assert "needs a token of scope" in signed.text
            stream = reader.get(f"/api/v1/runs/{wid}/events?after=0")  # the cookie reads the API
            assert stream.status_code == 200
            posted = reader.post(f"/api/v1/runs/{wid}/signal", json={"name": "approve"})
            assert posted.status_code == 401  # ... but never writes through it
            csrf = reader.cookies["tether_csrf"]
            refused = reader.post(f"/runs/{wid}/signal", data={"name": "approve", "csrf": csrf})
            assert refused.status_code == 403 and "this needs a token of scope" in refused.text
    finally:
        served.stop()


def test_times_show_in_the_readers_zone_and_switch_to_utc(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    from zoneinfo import ZoneInfo

    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    with Client(dash.url) as client:
        wid = client.start("greet", "Ada")
        rec = done(client, wid)
    tokyo = rec.created_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    utc = rec.created_at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")
    browser.get(dash.url + "/runs")
    created = f'tr[data-run-id="{wid}"] time'
    wait_until(browser, lambda d: text_of(d, created) == tokyo, "the time is not in Tokyo's")
    assert "Created (Asia/Tokyo)" in text_of(browser, "thead")
    assert browser.find_element(By.CSS_SELECTOR, created).get_attribute("title") == utc + " UTC"
    shot(browser, tmp_path, "runs-local-times")
    browser.find_element(By.ID, "tz-switch").click()
    wait_until(browser, lambda d: text_of(d, created) == utc, "the switch did not show UTC")
    assert "Created (UTC)" in text_of(browser, "thead")
    browser.get(f"{dash.url}/runs/{wid}")  # the choice is remembered on the next page
    first_event = browser.find_element(By.CSS_SELECTOR, "#events-body time")
    # the run's first event, at its own time (a loaded machine wrote it a second after
    # the run's creation now and then: compared with created_at, the test failed)
    at = rec.events[0].at
    assert first_event.text == at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")
    tokyo_at = at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    assert first_event.get_attribute("title") == tokyo_at + " Asia/Tokyo"
    assert text_of(browser, "#tz-switch") == "show Asia/Tokyo"


def test_a_payload_nested_too_deeply_to_read_is_refused_not_a_500(dash: Served) -> None:
    """'[' * 5000 was a 500 (RecursionError), then sent as a string: the field says
    JSON, and this is none that can be read."""
    with Client(dash.url) as client, httpx.Client(base_url=dash.url, timeout=60) as web:
        wid = _parked(client)
        csrf = _csrf(web.get(f"/runs/{wid}"))
        deep = "[" * 5000 + "]" * 5000
        sent = web.post(f"/runs/{wid}/signal", data={"name": "approve", "csrf": csrf,
                                                     "payload": deep})  # fmt: skip
        assert sent.status_code == 422, sent.text[:200]
        assert "The payload is nested too deeply to read" in sent.text
        assert client.get_record(wid).status is RunStatus.WAITING
    assert "RecursionError" not in dash.log


def test_filters_the_database_cannot_store_are_refused_as_the_api_refuses_them(
    pg_served: Served,
) -> None:
    """On PostgreSQL a NUL in a filter was a 503 store_unavailable (retry later)."""
    with Client(pg_served.url) as client:
        client.start("greet", {"name": "Ada"})
    for path in ("/runs?workflow=%00", "/runs?tag=a%00", "/runs?q=%00", "/usage?workflow=%00"):
        page = httpx.get(pg_served.url + path)
        assert page.status_code == 422, (path, page.status_code, page.text[:200])
        assert page.headers["content-type"].startswith("text/html")
        assert "NUL" in page.text and 'class="problem"' in page.text
    listed = httpx.get(pg_served.url + "/runs?workflow=%00")
    assert "greet" in listed.text  # the filter is dropped: every run is listed


def test_a_status_no_run_has_is_said_not_ignored(dash: Served) -> None:
    """``/runs?status=faild`` listed every run under no word: a mistyped link read as
    if all of them had failed."""
    with Client(dash.url) as client:
        client.start("greet", "Ada")
    page = httpx.get(dash.url + "/runs?status=faild")
    assert page.status_code == 422, page.text[:200]
    assert 'class="problem"' in page.text
    assert "There is no run status &#39;faild&#39;" in page.text and "failed" in page.text
    assert "greet" in page.text  # every run listed, as the note says
