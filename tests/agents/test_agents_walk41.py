"""A new user's walk of WORKFLOW.md prompts: what no attempt of any issue can render
is refused when the file is read, also when it is an edit of a running dispatcher."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, TemplateError, parse_workflow
from tether.agents.trackers import MemoryTracker, parse_issues

from ._procs import events, of, project, start

FRONT = "---\ntracker: {kind: memory, active_states: [todo]}\n---\n"


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("Fix it.\n{% include 'steps' %}", "{% include %} (line 2)"),
        ("{% render 'steps' %}", "{% render %} (line 1)"),
        ("{% liquid\n  include 'steps'\n%}", "{% include %} (line 2)"),
        ("Try #{{ attempt.number }}", "attempt.number (line 1)"),
        ("{% if attempt.retry %}again{% endif %}", "attempt.retry (line 1)"),
    ],
)
def test_a_prompt_no_attempt_can_render_is_refused_when_the_file_is_read(
    prompt: str, named: str
) -> None:
    """Before: an `include` or `render` (there is no other template to load) and a field
    of `attempt` (a number, None on the first run) were accepted, then failed every
    attempt of every issue ("does not render for ENG-1: steps"), each run retried until
    it waited for a person."""
    with pytest.raises(TemplateError) as err:
        parse_workflow(FRONT + prompt)
    assert err.value.code == "template_render_error"
    assert f"uses {named}" in str(err.value), str(err.value)


def test_an_include_no_longer_hides_the_prompts_other_typos() -> None:
    """Before: following the include raised inside the check, which then let
    `issue.titel` through as well."""
    with pytest.raises(TemplateError) as err:
        parse_workflow(FRONT + "{{ issue.titel }}\n{% include 'steps' %}")
    assert "{% include %} (line 2)" in str(err.value)
    with pytest.raises(TemplateError) as err:
        parse_workflow(FRONT + "{{ issue.titel }}\n{% render 'steps' with issue %}")
    assert "{% render %} (line 2)" in str(err.value)
    wf = parse_workflow(FRONT + "{% if attempt %}retry {{ attempt }}{% endif %}")
    assert wf.prompt.startswith("{% if attempt %}")


async def test_an_edit_adding_an_include_keeps_the_last_good_prompt(
    database_url: str, tmp_path: Path, home: Path
) -> None:
    """A dispatcher running a real agent process; WORKFLOW.md is edited to include a
    partial. Before: the edit was taken as good and the issue's attempt failed on it.
    Now it is refused naming the tag, and the agent gets the last good prompt."""
    path = tmp_path / "WORKFLOW.md"
    head = f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: command, command: "{sys.executable} {home / "agent.py"}", max_turns: 1,
        stall_timeout_ms: 0}}
---
"""
    path.write_text(head + "Work on {{ issue.identifier }}\n")
    tracker = MemoryTracker([Issue(id="I-1", identifier="I-1", title="t", state="todo")])
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, path, tracker=tracker)
        path.write_text(head + "Work on {{ issue.identifier }}\n{% include 'house-rules' %}\n")
        report = await d.run_once()
        assert d.broken() is not None and "{% include %} (line 2)" in d.broken()  # type: ignore[operator]
        # the last good config still reconciles and drives runs already dispatched;
        # a new dispatch waits for a file that loads
        assert report.dispatched == [] and report.failed == []
        path.write_text(head + "Work on {{ issue.identifier }} (house rules apply)\n")
        report = await d.run_once()
        assert report.dispatched == ["I-1"] and report.failed == [] and d.broken() is None
        assert len(of(home, "I-1", "end")) == 1
        assert tracker.issues["I-1"].state == "review"


DOC_ISSUE = """## DOC-1: Document the issues format
- status: todo
- labels: agent

Add this sample to the README:

```markdown
## DEMO-9: Write a greeting
- status: todo
```

~~~~
## not an issue either
~~~~
"""


@pytest.mark.timeout(120)
def test_a_heading_in_a_code_block_of_issues_md_is_no_issue(tmp_path: Path) -> None:
    """`tether agents run --once` on an ISSUES.md whose issue shows a sample in a fenced
    code block. Before: the ``## DEMO-9`` line inside the fence was an issue of its own:
    an agent was dispatched to it, the hand-off wrote ``status: review`` into DOC-1's
    sample, and DOC-1's description (its prompt) ended at the fence's first line."""
    where = project(tmp_path, [], database_url=f"sqlite:///{tmp_path}/t.db")
    (where / "ISSUES.md").write_text(DOC_ISSUE)
    proc = start(where, "once", "--once")
    assert proc.wait(timeout=100) == 0, (where / "once.out").read_text()
    assert [e["issue"] for e in events(where) if e["event"] == "start"] == ["DOC-1"]
    assert (where / "ISSUES.md").read_text() == DOC_ISSUE.replace(
        "- status: todo\n- labels", "- status: review\n- labels"
    )
    assert sorted(p.name for p in (where / "ws").iterdir() if not p.name.startswith(".")) == [
        "DOC-1"
    ]
    [issue] = parse_issues(DOC_ISSUE)
    assert issue.description is not None and issue.description.endswith(
        "## not an issue either\n~~~~"
    )


def test_a_fence_left_open_hides_no_issue_after_it() -> None:
    """Only a closed fence makes its lines code: a stray ``` must not swallow every
    issue after it. A longer fence is closed only by one as long."""
    text = "## A-1: a\n- status: todo\n```\n## B-1: b\n- status: todo\n"
    assert [i.identifier for i in parse_issues(text)] == ["A-1", "B-1"]
    text = "## A-1: a\n````\n## B-1: b\n```\n## C-1: c\n````\n## D-1: d\n"
    assert [i.identifier for i in parse_issues(text)] == ["A-1", "D-1"]
