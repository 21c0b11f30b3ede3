"""The agents page's phase chips in Chromium: coloured as the runs' status chips are
(running blue, waiting amber, failed red, done green, the rest grey), their text at a
contrast of at least 4.5:1 to their background, in the light and the dark scheme."""

from __future__ import annotations

import re
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

    @app.workflow(name="agents.issue")
    async def issue(wf: tether.Workflow, seed: list[str]) -> object:
        phase, outcome = seed
        if phase:
            await wf.update_state({"identifier": "I-" + phase, "phase": phase})
        if outcome == "fail":
            raise RuntimeError("the agent gave up")
        if outcome == "wait":
            return await wf.wait_for_signal("go")
        return None
    """
)

# a phase (or, with none, the run's status) and the status whose colours its chip takes
SEEDS = [
    ("running", "wait", "running"),
    ("retrying", "wait", "waiting"),
    ("waiting", "wait", "waiting"),
    ("released", "end", "skipped"),
    ("ended", "end", "skipped"),
    ("", "fail", "failed"),
    ("", "end", "completed"),
]

READ = """
const probe = document.createElement('span');
document.querySelector('main').appendChild(probe);
const out = [...document.querySelectorAll('#agents .counts .chip')].map(chip => {
  probe.className = 'badge st-' + arguments[0][chip.dataset.phase.split(' ')[0]];
  const s = getComputedStyle(chip), p = getComputedStyle(probe);
  return {phase: chip.dataset.phase, fg: s.color, bg: s.backgroundColor,
          want: [p.color, p.backgroundColor]};
});
probe.remove();
return out;
"""


def _rgb(css: str) -> tuple[float, float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", css)]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def _contrast(fg: str, bg: str) -> float:
    def lum(c: tuple[float, float, float, float]) -> float:
        lin = [(v / 255 / 12.92) if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4
               for v in c[:3]]  # fmt: skip
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    a, b = sorted((lum(_rgb(fg)), lum(_rgb(bg))), reverse=True)
    return (a + 0.05) / (b + 0.05)


@pytest.fixture
def issues(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    with Client(s.url) as client:
        for phase, outcome, _ in SEEDS:
            wid = client.start("agents.issue", [phase, outcome])
            done(client, wid, RunStatus.WAITING if outcome == "wait" else None)
    yield s
    s.stop()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [390, 1280])
def test_the_phase_chips_have_the_status_colours_at_a_readable_contrast(
    issues: Served, browser: Any, tmp_path: Path, width: int, scheme: str
) -> None:
    # the phase chips had no colour of their own: plain text, unlike the runs' status
    # chips, a failed issue looked as one running
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    browser.set_window_size(width, 900)
    browser.get(issues.url + "/agents?all=1")
    wait_until(browser, lambda d: d.find_elements("css selector", "#agents .chip"), "no chips")
    shot(browser, tmp_path, f"agents-phases-{scheme}-{width}", width=width)
    browser.set_window_size(width, 900)
    want = {(phase or status): status for phase, _, status in SEEDS}
    chips = browser.execute_script(READ, want)
    assert sorted(c["phase"] for c in chips) == sorted(want)
    for chip in chips:
        assert _rgb(chip["bg"])[3] == 1, chip  # a background of its own, opaque
        assert [chip["fg"], chip["bg"]] == chip["want"], chip  # the status chip's colours
        assert _contrast(chip["fg"], chip["bg"]) >= 4.5, chip
    assert len({c["bg"] for c in chips}) >= 4  # running, waiting, failed, done: apart
    assert browser.execute_script(
        "return document.scrollingElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways"


def test_contrast_is_computed_as_wcag_says() -> None:
    assert round(_contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)"), 1) == 21.0
    assert round(_contrast("rgb(119, 119, 119)", "rgba(255, 255, 255, 1)"), 2) == 4.48
