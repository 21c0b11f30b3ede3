"""A run's page in Chromium while a process drives the run: its compute time."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Client
from tether.testing import eventually_sync

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import WAIT, shot

FLOWS = textwrap.dedent(
    """
    import asyncio
    import os
    from pathlib import Path

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    async def until_released() -> None:  # the test releases it: the server stops at once
        while not Path("release").exists():
            await asyncio.sleep(0.05)

    @app.workflow
    async def slow(wf: tether.Workflow) -> None:
        await wf.step("first", lambda: 1)
        await wf.step("long", until_released)
    """
)

browser = test_dashboard.browser  # the fixture: a headless Chromium


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def test_a_driven_runs_compute_says_it_leaves_out_the_drive_under_way(
    dash: Served, browser: Any, tmp_path: Path
) -> None:
    # it said "Compute 0.0s" beside "Duration 3m so far": the store adds a drive's
    # compute only when the run parks or ends
    from selenium.webdriver.common.by import By

    with Client(dash.url) as client:
        wid = client.start("slow", workflow_id="slow-1")  # its step "long" waits for the test

        def long_runs() -> bool:
            steps = client.get_record(wid).steps
            return "long" in steps and steps["long"].status.value == "running"

        eventually_sync(long_runs, timeout=WAIT)
    browser.get(f"{dash.url}/runs/{wid}")
    compute = browser.find_element(By.XPATH, "//dt[.='Compute']/following-sibling::dd").text
    assert compute.startswith("0.0s") and "before this drive" in compute, compute
    assert browser.find_element(By.ID, "run-driver").text.startswith("Driven by")
    shot(browser, tmp_path, "run-driven-compute")
    (dash.folder / "release").touch()
