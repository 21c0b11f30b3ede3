"""The usage page in Chromium with a full period: 90 days of AI calls, over many
models and workflows with long names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import FakeClock, ai

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import shot

browser = test_dashboard.browser  # the fixture: a headless Chromium

MODELS = [f"demo:model-{i:02d}-" + "long-name-" * (i % 4) for i in range(12)]
FLOWS = [f"workflow_{j:02d}_" + "with_a_rather_long_name_" * (j % 3) for j in range(12)]


def _seed(url: str) -> None:
    """A call a day for the last 90 days, each day another model and workflow."""
    prices = ai.Prices({m: {"input_per_million": 1.0 + i, "output_per_million": 2.0 + i}
                        for i, m in enumerate(MODELS)})  # fmt: skip
    model = ai.FakeModel(lambda name, request: "An answer " * 20)
    first = (datetime.now(UTC) - timedelta(days=89)).replace(hour=12)
    clock = FakeClock(first)
    app = tether.App(url, clock=clock, ai=ai.Providers(demo=model, prices=prices))

    def named(name: str) -> Any:  # a function each: a workflow is known by its function
        async def asks(wf: tether.Workflow, day: int) -> str:
            reply = await wf.ai.generate_text(MODELS[day % 12], prompt="x" * 100 * (day % 7 + 1))
            return reply.text

        return app.workflow(name=name)(asks)

    flows = [named(name) for name in FLOWS]
    for day in range(90):
        clock.set(first + timedelta(days=day))
        app.run(flows[day % 12], day, workflow_id=f"r{day}")
    app.close()


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path}/t.db"
    _seed(url)
    s = start(tmp_path, url, flows=None)
    yield s
    s.stop()


FIT = """
const page = document.documentElement.getBoundingClientRect();
return [...document.querySelectorAll('svg.chart')].map(chart => {
  const box = chart.closest('.chart-box'), c = chart.getBoundingClientRect();
  const labels = [...chart.querySelectorAll('svg.labels')].map(l => l.getBoundingClientRect());
  return {
    width: c.width, room: box.clientWidth, overflow: box.scrollWidth - box.clientWidth,
    bars: chart.querySelectorAll('rect.bar').length,
    cut: [...chart.querySelectorAll('text.lbl')].filter(t => {
      const r = t.getBoundingClientRect();  // the text's own extent, clipped or not
      return r.width && (r.left < c.left - 0.5 || r.left < page.left);
    }).map(t => t.textContent),
    over_bars: labels.some(l => [...chart.querySelectorAll('rect.bar')]
      .some(b => b.getBoundingClientRect().left < l.right - 0.5)),
  };
});
"""


@pytest.mark.parametrize("width", [1280, 400])
def test_ninety_days_of_many_groups_fit_their_boxes_and_keep_label_starts(
    full: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # a long label was anchored at its end: its start fell off the chart's left edge
    browser.set_window_size(width, 900)
    browser.get(f"{full.url}/usage?days=90")
    charts = browser.execute_script(FIT)
    assert [c["bars"] for c in charts] == [90, 12, 12]
    for c in charts:
        assert c["width"] <= c["room"] + 0.5 and c["overflow"] <= 0, c
        assert c["cut"] == [] and not c["over_bars"], c
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways"
    shot(browser, tmp_path, f"usage-90-days-{width}", width=width)
