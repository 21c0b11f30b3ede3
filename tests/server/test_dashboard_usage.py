"""The usage page in Chromium with a full period: 90 days of AI calls, over many
models and workflows with long names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Client, FakeClock, ai

from . import test_dashboard
from ._serve import Served, start
from .test_dashboard import done, shot, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium
dash = test_dashboard.dash  # `tether serve` of flows with AI calls, one at no known price

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


READ = """
const visible = el => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
};
const own = el => [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join('').trim();
const skip = 'h2, table, details, title, .scroll';
return [...document.querySelectorAll('.chart-box')].map(box => {
  const b = box.getBoundingClientRect();
  const texts = [...box.querySelectorAll('*')]
    .filter(el => !el.closest(skip) && own(el) && visible(el))
    .map(el => {
      const r = el.getBoundingClientRect();
      const ctm = el.getScreenCTM ? el.getScreenCTM() : null;  // an SVG text is scaled
      const tip = el.querySelector('title') ? el.querySelector('title').textContent
        : (el.getAttribute('title') || '');
      return {
        text: own(el), tip: tip, cut: el.scrollWidth > el.clientWidth + 0.5,
        px: parseFloat(getComputedStyle(el).fontSize) * (ctm ? Math.abs(ctm.a) : 1),
        left: r.left, right: r.right, top: r.top, bottom: r.bottom,
      };
    });
  const tables = [...box.querySelectorAll('.scroll')].map(s => s.scrollWidth - s.clientWidth);
  const costs = [...box.querySelectorAll('tbody tr')]  // a table's, or the days' (hidden)
    .map(tr => tr.lastElementChild.textContent.trim().split(' ')[0]);
  return {
    title: box.querySelector('h2').textContent, texts: texts, tables: tables, costs: costs,
    bars: box.querySelectorAll('.bar').length,
    box: {left: b.left, right: b.right},
  };
});
"""


def _overlaps(texts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of texts whose boxes intersect (by more than half a pixel)."""
    found = []
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            if (
                min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
                and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
            ):
                found.append((a["text"], b["text"]))
    return found


@pytest.mark.parametrize("width", [390, 1280])
def test_the_usage_charts_are_readable_on_a_phone_and_a_desktop(
    full: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # at 390 px the charts were drawn at a desktop's size and shrunk to fit: the days'
    # labels came out 4.3 px high, the models' and workflows' 8 px; a workflow's name
    # pushed its table's costs out of sight
    browser.set_window_size(width, 900)
    browser.get(f"{full.url}/usage?days=90")
    shot(browser, tmp_path, f"usage-charts-{width}", width=width)
    browser.set_window_size(width, 900)
    assert browser.execute_script(
        "return document.scrollingElement.scrollWidth <= window.innerWidth"
    ), "the page scrolls sideways"
    day, model, flow = browser.execute_script(READ)
    assert [day["bars"], model["bars"], flow["bars"]] == [90, 12, 12]
    for chart in (day, model, flow):
        texts = chart["texts"]
        small = [(t["text"], round(t["px"], 1)) for t in texts if t["px"] < 11.5]
        assert small == [], (chart["title"], small)  # every label readable
        assert _overlaps(texts) == [], chart["title"]
        outside = [t["text"] for t in texts
                   if t["left"] < chart["box"]["left"] - 0.5 or t["right"] > chart["box"]["right"] + 0.5]  # fmt: skip
        assert outside == [], chart["title"]
        cut = [t["text"] for t in texts  # an ellipsis drawn, or written
               if (t["cut"] and t["tip"] != t["text"]) or (t["text"].endswith("…")
                   and not t["tip"].startswith(t["text"][:-1]))]  # fmt: skip
        assert cut == [], chart["title"]  # a label cut short has its whole text as a tooltip
        assert all(side <= 0 for side in chart["tables"]), chart  # every column in sight
    for chart in (model, flow):  # each group's cost shows beside its bar, its name too
        shown = [t["text"] for t in chart["texts"]]
        assert sorted(c for c in chart["costs"]) == sorted(s for s in shown if s.startswith("$"))
        names = {t["tip"] or t["text"] for t in chart["texts"] if not t["text"].startswith("$")}
        assert names == set(MODELS if chart is model else FLOWS)
    (top,) = [t["text"] for t in day["texts"] if t["text"].startswith("max")]
    assert top == "max " + max(day["costs"])  # the same width each: as text, the largest
    ticks = [t["text"] for t in day["texts"] if re.fullmatch(r"\d\d-\d\d", t["text"])]
    assert len(ticks) >= 4 and ticks[-1] == datetime.now(UTC).strftime("%m-%d"), ticks


COSTS = """
const out = [];
document.querySelectorAll('main table').forEach(table => {
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  const at = heads.findIndex(h => /cost/i.test(h));
  if (at < 0) return;
  const room = (table.closest('.scroll') || table.parentElement).getBoundingClientRect();
  table.querySelectorAll('tbody tr').forEach(tr => {
    const cell = tr.children[at];
    if (!cell) return;  // a table's 'none' row
    const r = cell.getBoundingClientRect();
    out.push({text: cell.textContent.trim(), right: r.right, room: Math.min(room.right, innerWidth)});
  });
});
return out;
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_every_cost_of_a_table_is_in_sight_without_scrolling_sideways(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # on a phone, "unknown +1 unpriced" (kept on one line) widened the cost column of
    # the usage tables past the screen's edge: a cost was read by scrolling the table
    with Client(dash.url) as client:
        runs = [client.start("triage", ["A ticket"]), client.start("local")]
        for wid in runs:
            done(client, wid)
    browser.set_window_size(width, 900)
    for page in [f"/runs/{wid}" for wid in runs] + ["/usage"]:
        browser.get(dash.url + page)
        cells = browser.execute_script(COSTS)
        shot(browser, tmp_path, f"costs{page.replace('/', '-')}-{width}", width=width)
        browser.set_window_size(width, 900)
        assert cells and all(c["text"] for c in cells), page
        assert ("unknown" in str(cells)) == ("triage" not in page), page
        hidden = [c for c in cells if c["right"] > c["room"] + 0.5]
        assert hidden == [], page
        assert browser.execute_script(
            "return document.scrollingElement.scrollWidth <= window.innerWidth"
        ), page


def test_a_charts_names_are_text_never_markup() -> None:
    from tether.server._dash_view import column_chart, hbar_chart

    name = 'demo:<b onclick="x()">bold</b>'
    bars = hbar_chart([(name, 5), ("other", 10)], 'cost "per" model')
    days = column_chart([("2026-01-01", 0), ("<i>", 3)], "per <day>")
    for html in (bars, days):
        assert "<b" not in html and "<i>" not in html and "per <day>" not in html
    assert 'title="demo:&lt;b onclick=&#34;x()&#34;&gt;bold&lt;/b&gt;"' in bars
    assert bars.index("other") < bars.index("demo:")  # the largest first


def test_a_narrow_box_labels_every_other_day_of_a_desktops_and_always_the_last() -> None:
    from tether.server._dash_view import _ticks

    for n in (7, 30, 90):
        ticks = _ticks(n)
        kept = [i for i, narrow in ticks if narrow]
        assert len(ticks) <= 9 and ticks[-1] == (n - 1, True), n
        assert kept == [i for i, _ in ticks][::-1][::2][::-1], n
        assert len(kept) <= 5, n


TABLES = """
return [...document.querySelectorAll('.grid2 .chart-box')].map(box => ({
  title: box.querySelector('h2').textContent,
  chart: [...box.querySelectorAll('.hbars .hb-label')].map(l => l.textContent),
  table: [...box.querySelectorAll('table.names tbody tr')].map(tr => [
    tr.children[0].textContent.trim(), tr.lastElementChild.textContent.trim().split(' ')[0]]),
}));
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_the_usage_tables_are_sorted_by_cost_as_their_charts(
    dash: Served, browser: Any, tmp_path: Path, width: int
) -> None:
    # the charts listed the costliest first, the tables beside them by name: the two
    # orders disagreed, a reader matched bars to rows by hand
    with Client(dash.url) as client:
        for wid in [client.start("triage", ["A ticket", "Another"]), client.start("local"),
                    client.start("greet", "Ada")]:  # fmt: skip
            done(client, wid)
    browser.set_window_size(width, 900)
    browser.get(dash.url + "/usage")
    shot(browser, tmp_path, f"usage-sorted-{width}", width=width)
    model, flow = browser.execute_script(TABLES)
    # by name: demo:big, demo:local, demo:small; by cost: big, small, then the unknown
    assert [name for name, _ in model["table"]] == ["demo:big", "demo:small", "demo:local"]
    assert [cost for _, cost in model["table"]][-1] == "unknown"
    assert [name for name, _ in flow["table"]] == ["triage", "local"]
    for box in (model, flow):  # the priced rows in the chart's order, the unknown after
        assert [name for name, _ in box["table"]][: len(box["chart"])] == box["chart"], box


def test_a_usage_tables_order_is_cost_then_unknown_then_name() -> None:
    from tether.server._dash_ops import by_cost
    from tether.store import AIUsageRow

    def row(group: str, cost: int, priced: int, unknown: int = 0) -> AIUsageRow:
        return AIUsageRow(group, priced + unknown, 10, 0, 0, 10, 0, cost, unknown, priced)

    rows = [row("a-unknown", 0, 0, 2), row("b-free", 0, 1), row("c-cheap", 5, 1),
            row("d-dear", 90, 2), row("e-cheap", 5, 1, 1), row("0-unknown", 0, 0, 1)]  # fmt: skip
    assert [r.group for r in by_cost(rows)] == [
        "d-dear", "c-cheap", "e-cheap", "b-free", "0-unknown", "a-unknown"]  # fmt: skip


ODD = "triage & reply #2"  # a name a link must encode ('&' and '#' end a bare query's value)


def _seed_odd_names(url: str) -> dict[str, list[str]]:
    """Runs of three workflows, two of them with AI calls: the ids of each one's runs."""
    model = ai.FakeModel(lambda name, request: "An answer.")
    app = tether.App(url, ai=ai.Providers(demo=model))

    def named(name: str, calls: bool) -> Any:
        async def asks(wf: tether.Workflow) -> str:
            return (await wf.ai.generate_text("demo:small", prompt="x")).text if calls else ""

        return app.workflow(name=name)(asks)

    flows = {ODD: named(ODD, True), "triage": named("triage", True), "quiet": named("quiet", False)}
    ids: dict[str, list[str]] = {}
    for name, flow in flows.items():
        ids[name] = [f"{name}-{i}" for i in range(2)]
        for wid in ids[name]:
            app.run(flow, workflow_id=wid)
    app.close()
    return ids


def test_a_usage_rows_workflow_links_to_that_workflows_runs(browser: Any, tmp_path: Path) -> None:
    # a workflow's row said its cost and calls, but reaching its runs meant typing its
    # name into the runs page's filter
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path}/t.db"
    ids = _seed_odd_names(url)
    served = start(tmp_path, url, flows=None)
    try:
        browser.get(served.url + "/usage")
        shot(browser, tmp_path, "usage-workflow-links")
        links = browser.find_elements(By.CSS_SELECTOR, "#h-2 ~ .scroll tbody td:first-child a")
        assert sorted(a.text for a in links) == sorted([ODD, "triage"])
        next(a for a in links if a.text == ODD).click()
        wait_until(browser, lambda d: "/runs?" in d.current_url, "the link led nowhere")
        shot(browser, tmp_path, "usage-workflow-link-followed")
        listed = browser.execute_script(
            "return [...document.querySelectorAll('#runs-body tr[data-run-id]')]"
            ".map(tr => tr.dataset.runId)"
        )
        assert sorted(listed) == sorted(ids[ODD]), (listed, ids)
        assert browser.find_element(By.ID, "f-workflow").get_attribute("value") == ODD
    finally:
        served.stop()
