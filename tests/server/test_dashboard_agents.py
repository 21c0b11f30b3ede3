"""The dashboard's /agents page in Chromium: the dispatcher's issue runs, read from
the database a real `tether serve` serves."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Client, RunStatus
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents._run import ISSUE_WORKFLOW as DISPATCHER_WORKFLOW
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.server._dash_agents import ISSUE_WORKFLOW, SHOWN

from ._serve import start
from .test_dashboard import browser, done, shot, text_of, wait_until  # noqa: F401 (a fixture)


def test_the_page_reads_the_dispatchers_own_runs() -> None:
    assert ISSUE_WORKFLOW == DISPATCHER_WORKFLOW


async def _issue_waiting_for_a_person(url: str, tmp: Path) -> None:
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done]}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 2, max_retries: 1, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}
""",
        path=tmp / "WORKFLOW.md",
    )
    app = tether.App(url)
    tracker = MemoryTracker([Issue(id="C-1", identifier="C-1", title="Pick a colour",
                                   state="todo")])  # fmt: skip
    backend = MockBackend([{"result": "input_required", "message": "which colour?",
                            "usage": {"input_tokens": 120, "output_tokens": 30}}])  # fmt: skip
    try:
        await Dispatcher(app, config, tracker=tracker, backend=backend).run_once()
    finally:
        await app.aclose()


def test_the_agents_page_shows_an_issue_waiting_for_a_person(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_issue_waiting_for_a_person(url, tmp_path))
    served = start(tmp_path, url)
    try:
        browser.get(served.url + "/agents")
        wait_until(browser, lambda d: "C-1" in text_of(d, "table.agents"), "no issue row")
        row = text_of(browser, 'tr[data-issue="C-1"]')
        assert "Pick a colour" in row and "waiting" in row and "input_required" in row
        assert "150" in row  # tokens: 120 in + 30 out, from the call log
        assert str(tmp_path / "ws") in row  # its workspace
        assert "workflow.waiting" in row  # its newest event (not its first)
        assert text_of(browser, '[data-phase="waiting"]') == "waiting 1"
        shot(browser, tmp_path, "agents")
        browser.get(served.url + "/agents?all=1")
        wait_until(browser, lambda d: "C-1" in text_of(d, "table.agents"), "not in all")
    finally:
        served.stop()


# issue runs as the dispatcher records them (workflow ``agents.issue``, the phase in its
# state): one whose agent made no AI call, one at no known price, one priced, and one
# cancelled while it waited for a person
ISSUES = textwrap.dedent(
    """
    import os

    import tether
    from tether import ai

    prices = ai.Prices({"demo:priced": {"input_per_million": 1.0, "output_per_million": 2.0}})
    model = ai.FakeModel(lambda name, request: "An answer in a few words.")
    app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="agents.issue")
    async def issue(wf: tether.Workflow, seed: list[str]) -> object:
        identifier, model, phase = seed
        await wf.update_state({"identifier": identifier, "phase": phase,
                               "reason": "input_required" if phase == "waiting" else None})
        if model:
            await wf.ai.generate_text(model, prompt="a question")
        return await wf.wait_for_signal("go")
    """
)
SEEDS = [
    ("I-none", "", "waiting"),
    ("I-unknown", "demo:local", "waiting"),
    ("I-priced", "demo:priced", "running"),
    ("I-gone", "demo:priced", "waiting"),
]

ROWS = """
return Object.fromEntries([...document.querySelectorAll('tr[data-issue]')].map(tr => {
  const cost = tr.children[5], right = cost.getBoundingClientRect().right;
  const room = Math.min(innerWidth, tr.closest('.scroll').getBoundingClientRect().right);
  return [tr.dataset.issue, {phase: tr.children[1].innerText.trim().replace(/\\s+/g, ' '),
    cost: cost.innerText.trim().replace(/\\s+/g, ' '), inSight: right <= room + 0.5,
    why: (cost.querySelector('[title]') || cost).getAttribute('title') || ''}];
}));
"""


@pytest.mark.parametrize("width", [390, 1280])
def test_an_issues_cost_says_none_or_unknown_and_an_ended_run_is_no_longer_waiting(
    tmp_path: Path,
    browser: Any,  # noqa: F811
    width: int,
) -> None:
    # an issue whose agent made no AI call had an empty cost cell; one whose calls had
    # no known price showed $0.000000; one cancelled while it waited for a person still
    # said "waiting", and the chips counted it among those waiting
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=ISSUES)
    try:
        with Client(served.url) as client:
            for seed in SEEDS:
                done(client, client.start("agents.issue", list(seed), workflow_id=seed[0]),
                     RunStatus.WAITING)  # fmt: skip
            client.cancel("I-gone", "issue no longer active")
            done(client, "I-gone", RunStatus.CANCELLED)
        browser.set_window_size(width, 900)
        browser.get(served.url + "/agents?all=1")
        wait_until(browser, lambda d: "I-gone" in text_of(d, "table.agents"), "no issue rows")
        shot(browser, tmp_path, f"agents-costs-{width}", width=width)
        browser.set_window_size(width, 900)
        rows = browser.execute_script(ROWS)
        chips = [c.text for c in browser.find_elements("css selector", "#agents .counts .chip")]
    finally:
        served.stop()
    assert rows["I-none"]["cost"] == "—" and "no AI calls" in rows["I-none"]["why"], rows
    assert rows["I-unknown"]["cost"] == "unknown +1 unpriced", rows
    assert rows["I-priced"]["cost"].startswith("$0.0000"), rows
    assert rows["I-gone"]["phase"] == "cancelled issue no longer active", rows
    assert sorted(chips) == ["cancelled 1", "running 1", "waiting 2"], chips
    assert all(r["inSight"] for r in rows.values()), rows


async def _one_waiting_behind_many_ended(url: str, ended: int) -> None:
    app = tether.App(url)

    @app.workflow(name="agents.issue")
    async def issue(wf: tether.Workflow, identifier: str) -> object:
        await wf.update_state({"identifier": identifier, "phase": "waiting"})
        if identifier == "OLD-1":
            return await wf.wait_for_signal("answer")
        return None

    try:
        await app.astart(issue, "OLD-1", workflow_id="issue-old")
        while (await app.aget_run("issue-old")).status is not RunStatus.WAITING:
            await asyncio.sleep(0.02)
        for n in range(ended):
            await app.arun(issue, f"NEW-{n}", workflow_id=f"issue-{n:03d}")
    finally:
        await app.aclose()


def test_an_issue_waiting_behind_many_newer_ended_runs_is_still_listed(tmp_path: Path) -> None:
    # the page read the newest 200 issue runs and kept those not ended: an issue waiting
    # for a person since before 200 newer runs ended was not on the page, nor counted
    import httpx

    url = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_one_waiting_behind_many_ended(url, SHOWN))
    served = start(tmp_path, url, flows=None)
    try:
        page = httpx.get(served.url + "/agents")
        every = httpx.get(served.url + "/agents?all=1")
    finally:
        served.stop()
    assert 'data-issue="OLD-1"' in page.text
    assert page.text.count("data-issue=") == 1 and 'data-phase="waiting">waiting 1' in page.text
    assert every.text.count("data-issue=") == SHOWN and 'data-issue="OLD-1"' not in every.text
    assert f"the newest {SHOWN} are shown" in every.text  # and says it holds no more
