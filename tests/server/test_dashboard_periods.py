"""The runs, usage and run pages in Chromium: a period the page does not offer is
named, the usage page's period starts on the day its chart starts, and the timeline's
legend keeps each key by its word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served
from .test_dashboard import done, shot, text_of

browser = test_dashboard.browser  # the fixture: a headless Chromium
dash = test_dashboard.dash  # `tether serve` of the dashboard's flows, on a SQLite file


def test_a_creation_period_the_runs_page_does_not_offer_is_named(
    browser: Any, dash: Served, tmp_path: Path
) -> None:
    """`/runs?since=2d` (a hand-edited link: the page offers 1h, 24h, 7d, 30d) listed
    every run, the Created box at "any time", without a word: the reader took them
    for the runs of the last two days."""
    browser.get(f"{dash.url}/runs?since=2d")
    shot(browser, tmp_path, "runs-unknown-since")
    problem = text_of(browser, "p.problem[role=alert]")
    assert "'2d'" in problem and "1h, 24h, 7d, 30d" in problem, problem
    assert "any time" in problem, problem
    chosen = browser.find_element(By.ID, "f-since").get_attribute("value")
    assert chosen == "", chosen


def test_a_usage_period_the_page_does_not_offer_is_named(
    browser: Any, dash: Served, tmp_path: Path
) -> None:
    """`/usage?days=365` showed the last 30 days with no word that 365 was dropped."""
    browser.get(f"{dash.url}/usage?days=365")
    shot(browser, tmp_path, "usage-unknown-days")
    problem = text_of(browser, "p.problem[role=alert]")
    assert "'365'" in problem and "7, 30, 90" in problem and "last 30 days" in problem, problem


def test_the_usage_period_starts_on_its_first_utc_day_in_any_zone(
    browser: Any, dash: Served, tmp_path: Path
) -> None:
    """The chart's days are UTC days, but the line over it said, to a reader in New
    York, "Since 2026-11-05 19:00:00" for a chart whose first day is 11-06."""
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    browser.get(f"{dash.url}/usage?days=7")
    shot(browser, tmp_path, "usage-since-new-york")
    first_day = browser.execute_script(
        "return document.querySelector('.cols-plot rect title').textContent.split(':')[0]"
    )
    line = text_of(browser, "p.total")
    assert line.startswith(f"Since {first_day} (UTC days):"), (line, first_day)


LEGEND = """
const keys = Array.from(document.querySelectorAll('.legend .key'));
return keys.map((key, i) => {
  const word = key.nextSibling, k = key.getBoundingClientRect();
  const range = document.createRange();
  range.setStart(word, word.textContent.search(/\\S/));
  range.setEnd(word, word.textContent.trimEnd().length);
  const w = range.getBoundingClientRect();
  const next = keys[i + 1] ? keys[i + 1].getBoundingClientRect() : null;
  return {word: range.toString(), keyTop: k.top, keyBottom: k.bottom, wordTop: w.top,
          wordBottom: w.bottom, gap: w.left - k.right, right: w.right, next: next};
});
"""


def test_each_timeline_key_keeps_its_word_on_a_phone(
    browser: Any, dash: Served, tmp_path: Path
) -> None:
    """The timeline's legend at 320 px put the retry mark at the end of one line and
    "retry" at the start of the next, and spaced every word as far from its key as
    from the next key: which word named which key was a guess."""
    with Client(dash.url) as client:
        wid = client.start("greet", "Ada")
        done(client, wid, RunStatus.COMPLETED)
    browser.set_window_size(320, 900)
    browser.get(f"{dash.url}/runs/{wid}")
    shot(browser, tmp_path, "legend-phone", width=320)
    keys = browser.execute_script(LEGEND)
    assert [k["word"] for k in keys] == ["stage", "step", "wait", "child run", "retry"], keys
    for k in keys:
        # the word beside its key, on the key's line
        assert k["wordTop"] < k["keyBottom"] and k["keyTop"] < k["wordBottom"], k
        if k["next"] is not None and abs(k["next"]["top"] - k["wordTop"]) < 4:
            assert k["next"]["left"] - k["right"] > 1.5 * k["gap"], k  # nearer its own key
