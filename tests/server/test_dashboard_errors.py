"""A run's last error on its page in Chromium, on a phone (390 px) and a desktop: a
long one (a traceback of hundreds of lines, or 50 KB of unbroken text) shows its first
lines in a box of bounded height, the whole of it a click away, selectable as text."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client, RunStatus

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

FLOWS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def long_trace(wf: tether.Workflow) -> None:
        lines = [f'  File "/srv/app/module_{i}.py", line {i}, in handler_{i}' for i in range(300)]
        raise RuntimeError("the agent gave up\\n" + "\\n".join(lines) + "\\nTHE LAST LINE")

    @app.workflow
    async def long_blob(wf: tether.Workflow) -> None:
        raise ValueError("blob:" + "x" * 50_000 + "THE-END")

    @app.workflow
    async def short(wf: tether.Workflow) -> None:
        raise RuntimeError("a short one")

    @app.workflow
    async def waits(wf: tether.Workflow) -> object:
        await wf.step("before", lambda: 1)
        return await wf.wait_for_signal("go")
    """
)

READ = """
const box = document.querySelector('#summary .last-error');
const text = box.querySelector('.err-text');
const toggle = box.querySelector('details.err-more');
const range = document.createRange();
range.selectNodeContents(text);
const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range);
const selected = sel.toString(); sel.removeAllRanges();
const t = text.getBoundingClientRect();
return {
  height: box.getBoundingClientRect().height,
  clipped: text.scrollHeight > text.clientHeight + 1,
  textHeight: t.height, text: text.textContent, selected: selected,
  toggle: toggle ? toggle.querySelector('summary').textContent.trim() : null,
  open: toggle ? toggle.open : null,
  sideways: document.scrollingElement.scrollWidth > innerWidth,
  innerHeight: innerHeight,
};
"""


@pytest.fixture
def failed(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    with Client(s.url) as client:
        ids = {name: client.start(name) for name in ("long_trace", "long_blob", "short")}
        for wid in ids.values():
            done(client, wid, RunStatus.FAILED)
    yield s, ids
    s.stop()


@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("name", ["long_trace", "long_blob"])
def test_a_long_last_error_is_bounded_until_expanded(
    failed: tuple[Served, dict[str, str]], browser: Any, tmp_path: Path, width: int, name: str
) -> None:
    # a traceback of 300 lines, or 50 KB of text, filled screen after screen of the
    # run's summary, on a phone and on a desktop: it had no height limit, no collapse
    from selenium.webdriver.common.by import By

    served, ids = failed
    end = "THE LAST LINE" if name == "long_trace" else "THE-END"
    browser.set_window_size(width, 900)
    browser.get(f"{served.url}/runs/{ids[name]}")
    shot(browser, tmp_path, f"error-{name}-{width}", width=width)
    browser.set_window_size(width, 900)
    before = browser.execute_script(READ)
    assert before["height"] <= 400, before["height"]  # a few lines, not screens
    assert before["clipped"] and before["toggle"] and before["open"] is False, before["toggle"]
    assert end in before["text"] and end in before["selected"]  # the whole text, as text
    if name == "long_trace":  # its lines kept as lines
        assert before["text"].count("\n") >= 300
    assert not before["sideways"], "the page scrolls sideways"
    browser.find_element(By.CSS_SELECTOR, "#summary .last-error details.err-more summary").click()
    after = browser.execute_script(READ)
    shot(browser, tmp_path, f"error-{name}-{width}-open", width=width)
    browser.set_window_size(width, 900)
    assert after["open"] is True and not after["clipped"], after["toggle"]
    assert after["textHeight"] > before["textHeight"] * 3  # the whole text, shown
    assert end in after["selected"]
    assert not after["sideways"], "the page scrolls sideways once expanded"
    last = browser.execute_script(  # its last words are drawn, inside the page's width
        "const t = document.querySelector('#summary .last-error .err-text');"
        "const w = document.createTreeWalker(t, NodeFilter.SHOW_TEXT); let n;"
        "while ((n = w.nextNode()) && !n.data.includes(arguments[0])) {}"
        "const at = n.data.lastIndexOf(arguments[0]);"
        "const r = document.createRange(); r.setStart(n, at); r.setEnd(n, at + arguments[0].length);"
        "const b = r.getBoundingClientRect();"
        "return {w: b.width, right: b.right, inner: innerWidth};",
        end,
    )
    assert last["w"] > 0 and last["right"] <= last["inner"], last


def test_a_short_last_error_has_no_toggle(
    failed: tuple[Served, dict[str, str]], browser: Any
) -> None:
    served, ids = failed
    browser.get(f"{served.url}/runs/{ids['short']}")
    got = browser.execute_script(READ)
    assert got["toggle"] is None and not got["clipped"]
    assert got["text"].strip() == "RuntimeError: a short one"


def test_a_live_redraw_keeps_what_the_reader_opened_or_closed(
    failed: tuple[Served, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    # the page redraws a part when the run moves on: every toggle of it went back to
    # how the server wrote it (an error's whole text being read folded back)
    from selenium.webdriver.common.by import By

    served, _ = failed
    with Client(served.url) as client:
        wid = client.start("waits")
        done(client, wid, RunStatus.WAITING)
        browser.get(f"{served.url}/runs/{wid}")
        shown = "return [...document.querySelectorAll('#data details')].map(d => d.open)"
        assert browser.execute_script(shown) == [True, True, False]  # output, state, input
        for summary in browser.find_elements(By.CSS_SELECTOR, "#data details summary"):
            summary.click()  # the output and the state shut, the input open
        browser.find_element(By.CSS_SELECTOR, "h1").click()  # the focus out of the part
        assert client.signal(wid, "go", "yes")
        wait_until(browser, lambda d: "yes" in d.find_element(By.ID, "run-output").
                   get_attribute("textContent"), "the output never came")  # fmt: skip
        shot(browser, tmp_path, "error-live-redraw")
        assert browser.execute_script(shown) == [False, False, True]


SUMMARY = "#summary .last-error details.err-more summary"
# scroll so that the point `arguments[0]` of the way down the error's text is mid-window
TO_ERROR = """
const t = document.querySelector('#summary .last-error .err-text').getBoundingClientRect();
scrollTo(0, scrollY + t.top + t.height * arguments[0] - innerHeight / 2);
"""
# the toggle: inside the window, and what a click at its middle reaches (nothing over it)
TOGGLE = """
const s = document.querySelector(arguments[0]).getBoundingClientRect();
const hit = document.elementFromPoint(s.left + s.width / 2, s.top + s.height / 2);
return {top: s.top, bottom: s.bottom, innerHeight: innerHeight,
        inside: s.top >= 0 && s.bottom <= innerHeight, hit: !!(hit && hit.closest('summary'))};
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_an_open_long_error_folds_from_where_it_is_read(
    failed: tuple[Served, dict[str, str]], browser: Any, tmp_path: Path, width: int
) -> None:
    # once a long error was open, its one toggle was under its last line: a reader at
    # the top or in the middle of a 300-line traceback scrolled screens down to fold it
    from selenium.webdriver.common.by import By

    served, ids = failed
    browser.set_window_size(width, 900)
    browser.get(f"{served.url}/runs/{ids['long_trace']}")
    browser.find_element(By.CSS_SELECTOR, SUMMARY).click()
    assert browser.execute_script(READ)["open"] is True
    for where in (0.0, 0.5):  # its first lines, then its middle, mid-window
        browser.execute_script(TO_ERROR, where)
        seen = browser.execute_script(TOGGLE, SUMMARY)
        assert seen["inside"] and seen["hit"], (where, seen)
    browser.save_screenshot(str(tmp_path / f"error-open-middle-{width}.png"))
    browser.find_element(By.CSS_SELECTOR, SUMMARY).click()  # where it is: in sight
    wait_until(browser, lambda d: d.execute_script(READ)["open"] is False, "it did not fold")

    # folded, the reader is at the error's top, not screens below it (the page's
    # "toggle" handler runs as a task queued after `open` changes, so it is waited for)
    def in_sight(d: Any) -> bool:
        top = d.execute_script(
            "return document.querySelector('#summary .last-error').getBoundingClientRect().top"
        )
        return bool(-2 <= top < d.execute_script("return innerHeight") / 2)

    wait_until(browser, in_sight, "the folded error was not brought back into sight")
    assert browser.execute_script(READ)["clipped"]
    shot(browser, tmp_path, f"error-folded-again-{width}", width=width)


def test_a_cancelled_runs_reason_is_no_last_error(failed: tuple[Served, dict[str, str]]) -> None:
    # a run cancelled by hand said "Last error: Cancelled: no longer needed", as if it
    # had failed; one cancelled with no reason, "Last error: Cancelled: cancelled"
    import httpx

    served, ids = failed
    with Client(served.url) as client:
        given, bare = client.start("waits"), client.start("waits")
        for wid in (given, bare):
            done(client, wid, RunStatus.WAITING)
        client.cancel(given, "no longer needed")
        client.cancel(bare)
        for wid in (given, bare):
            done(client, wid, RunStatus.CANCELLED)

    def box(wid: str) -> str:
        page = httpx.get(f"{served.url}/runs/{wid}").text
        return page.split('<div class="problem last-error', 1)[1].split("</div>\n  </div>")[0]

    assert "<strong>Cancelled:</strong>" in box(given) and "no longer needed" in box(given)
    assert "Last error" not in box(given) and "Cancelled: no longer" not in box(given)
    assert "no reason given" in box(bare) and "cancelled<" not in box(bare)
    assert "<strong>Last error:</strong>" in box(ids["short"])  # a failure still is one
