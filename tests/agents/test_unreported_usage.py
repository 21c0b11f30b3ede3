"""An agent turn whose usage was not told is a call of unknown cost, as `wf.ai` logs
one: before, a turn whose model calls reported no usage (the api backend's answer
without usage, a claude or codex stream without a usage line) wrote no call row, so
`tether usage` and the run's usage showed nothing of what it was billed."""

from __future__ import annotations

import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import ai
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker

RUN = "agent:memory:ENG-1"
PRICES = ai.Prices(
    {"fake:m": {"input_per_million": 1.0, "output_per_million": 2.0}}, genai_prices=False
)
UNTOLD = ai.ModelReply(text="done", usage_reported=False)  # an answer carrying no usage


def _app(tmp: Path, *replies: ai.ModelReply) -> tether.App:
    fake = ai.FakeModel(list(replies or [UNTOLD]))
    return tether.App(
        f"sqlite:///{tmp}/t.db",
        clock=tether.FakeClock(),
        inline_wait=5.0,
        ai=ai.Providers(fake=fake, prices=PRICES),
    )


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tether.App]:
    the_app = _app(tmp_path)
    yield the_app
    await the_app.aclose()


async def _dispatch(app: tether.App, tmp: Path, agent: str) -> None:
    wf = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{{agent}, stall_timeout_ms: 0}}
---
Fix {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="1", identifier="ENG-1", title="Typo", state="todo")])
    await Dispatcher(app, wf, tracker=tracker).run_once()


async def _usage(app: tether.App, run: str) -> tuple[int, int, int, float | None]:
    [total] = await app.ausage(run=run)
    return total.calls, total.unknown_cost_calls, total.input_tokens, total.known_cost_usd


async def test_an_api_turn_whose_model_told_no_usage_counts_as_unknown_like_wf_ai(
    tmp_path: Path,
) -> None:
    async with _app(tmp_path, UNTOLD, UNTOLD) as app:
        await _check_untold_api_turn(app, tmp_path)


async def _check_untold_api_turn(app: tether.App, tmp_path: Path) -> None:
    await _dispatch(app, tmp_path, 'backend: api, model: "fake:m", max_turns: 1')
    [row] = await app.alist_ai_calls(RUN)
    assert row.cost_micro_usd is None and row.cost_unknown and row.call_type == "agent"
    assert await _usage(app, RUN) == (1, 1, 0, None)

    # the same answer asked through wf.ai (the script's second reply): the same account
    async def ask(wf: tether.Workflow) -> str:
        return (await wf.ai.generate_text("fake:m", prompt="fix it")).text

    await app.arun(app.workflow(name="ask")(ask), workflow_id="w1")
    assert await _usage(app, "w1") == (1, 1, 0, None)


async def test_a_turn_with_priced_and_untold_calls_keeps_both_apart(tmp_path: Path) -> None:
    """Before: the untold call was summed in as free, and the turn logged the priced
    call's $0.0012 as its whole, known cost."""
    listing = {
        "id": "c1",
        "type": "function",
        "function": {"name": "list_files", "arguments": "{}"},
    }
    told = ai.ModelReply(tool_calls=[listing], usage=ai.Usage(input_tokens=1000, output_tokens=100))
    async with _app(tmp_path, told, UNTOLD) as app:
        await _dispatch(app, tmp_path, 'backend: api, model: "fake:m", max_turns: 1')
        rows = await app.alist_ai_calls(RUN)
        assert sorted((r.input_tokens, r.cost_micro_usd) for r in rows) == [
            (0, None),
            (1000, 1200),
        ]
        assert await _usage(app, RUN) == (2, 1, 1000, 0.0012)


def _cli(tmp: Path, name: str, body: str) -> str:
    path = tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


CLAUDE_WORKS = r"""
sys.stdin.read()
say = lambda **line: print(json.dumps(line), flush=True)
say(type="system", subtype="init", session_id="s1")
say(type="assistant", session_id="s1", message={"content": [{"type": "text", "text": "hi"}]})
"""
RESULT_WITHOUT_USAGE = (
    'say(type="result", subtype="success", is_error=False, result="done", session_id="s1")\n'
)


@pytest.mark.parametrize("end", [RESULT_WITHOUT_USAGE, ""], ids=["result", "exit-0"])
async def test_a_claude_turn_that_told_no_usage_is_a_call_of_unknown_cost(
    app: tether.App, tmp_path: Path, end: str
) -> None:
    cli = _cli(tmp_path, "claude", CLAUDE_WORKS + end)
    await _dispatch(app, tmp_path, f'backend: claude, command: "{cli}", max_turns: 1')
    [row] = await app.alist_ai_calls(RUN)
    assert (row.provider, row.cost_micro_usd, row.input_tokens) == ("claude", None, 0)
    assert await _usage(app, RUN) == (1, 1, 0, None)


# turn 1 tells the thread's total, turn 2 tells none, turn 3 the total again (grown)
CODEX_SILENT_TURN = r"""
sys.stdin.read()
log = os.path.join(os.path.dirname(sys.argv[0]), "turns")
turn = 1 + (len(open(log).read()) if os.path.exists(log) else 0)
open(log, "a").write("x")
say = lambda **line: print(json.dumps(line), flush=True)
say(type="thread.started", thread_id="t1")
say(type="item.completed", item={"id": "i", "type": "agent_message", "text": "edited"})
totals = {1: {"input_tokens": 2000, "output_tokens": 300}, 3: {"input_tokens": 4000,
          "output_tokens": 600}}
say(type="turn.completed", **({"usage": totals[turn]} if turn in totals else {}))
"""


async def test_a_codex_turn_without_usage_is_unknown_and_the_next_counts_once(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: the silent turn wrote no row, and its missing usage was read as a total
    of zero, so the next turn counted the thread's whole total (4,000) again."""
    cli = _cli(tmp_path, "codex", CODEX_SILENT_TURN)
    await _dispatch(app, tmp_path, f'backend: codex, command: "{cli}", max_turns: 3')
    rows: list[Any] = await app.alist_ai_calls(RUN)
    assert [(r.input_tokens, r.output_tokens, r.cost_micro_usd) for r in rows] == [
        (2000, 300, None),
        (0, 0, None),
        (2000, 300, None),
    ]
    assert await _usage(app, RUN) == (3, 3, 4000, None)
