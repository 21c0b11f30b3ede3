"""A run's own event typed ``end`` on its live page: the page took it for the end of the
stream (the frame ``event: end``), left it out of the events table and, once the
connection dropped, never reconnected for the run's later events."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client, RunStatus

from ._serve import Served, start
from .test_dashboard import browser, done, shot, text_of, wait_until

__all__ = ["browser"]  # the fixture, used by name

FLOWS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def chapters(wf: tether.Workflow) -> str:
        await wf.wait_for_signal("go")
        await wf.append_event("end", "the end of chapter one")
        await wf.wait_for_signal("more")
        return "two chapters"
    """
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def test_a_runs_own_end_event_is_shown_and_the_page_goes_on_following(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(served.url) as client:
        wid = client.start("chapters")
        browser.get(f"{served.url}/runs/{wid}")
        wait_until(browser, lambda d: text_of(d, "#live") == "live", "the stream never opened")
        assert client.signal(wid, "go")

        def end_row(d: Any) -> Any:
            rows = d.find_elements(By.CSS_SELECTOR, "#events-body tr")
            return [r for r in rows if "the end of chapter one" in r.text]

        wait_until(browser, end_row, "the run's own 'end' event never reached the table")
        assert text_of(browser, "#live") == "live"  # not taken for the stream's end
        shot(browser, tmp_path, "run-own-end-event")
        assert client.signal(wid, "more")
        assert done(client, wid, RunStatus.COMPLETED).output == "two chapters"
        wait_until(browser, lambda d: text_of(d, "#run-status") == "completed",
                   "the page never showed the run completed")  # fmt: skip
        wait_until(browser, lambda d: "ended" in text_of(d, "#live"), "the stream never ended")
