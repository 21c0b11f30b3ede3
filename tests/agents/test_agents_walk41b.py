"""A new user's walk of ISSUES.md and WORKFLOW.md: a duplicate identifier, a priority
word and a loop over the labels are each either understood or refused by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, TemplateError, TrackerError, parse_workflow
from tether.agents._prompt import render_prompt
from tether.agents.trackers import FileTracker, parse_issues

FRONT = "---\ntracker: {kind: memory, active_states: [todo]}\n---\n"

TWICE = """# Issues

## ENG-1: Write the greeting
- status: todo

Say hello.

## ENG-1: Write the farewell
- status: todo

Say goodbye.
"""


def _workflow(tmp_path: Path) -> Path:
    """A WORKFLOW.md on tmp_path/ISSUES.md (an agent that exits at once: never driven)."""
    workflow = tmp_path / "WORKFLOW.md"
    workflow.write_text(
        "---\ntracker: {kind: file, path: ISSUES.md, active_states: [todo]}\n"
        f"workspace: {{root: {tmp_path / 'ws'}}}\n"
        f'agent: {{backend: command, command: "{sys.executable} -c pass"}}\n---\n'
        "Work on {{ issue.identifier }}\n"
    )
    return workflow


async def test_two_sections_with_one_identifier_are_refused_naming_both_lines(
    tmp_path: Path,
) -> None:
    """Before: both were read as issues; the dispatcher ran the first and skipped the
    second as "changed since the poll", and a move or comment went to the first."""
    with pytest.raises(TrackerError) as err:
        parse_issues(TWICE)
    assert "two issues 'ENG-1'" in str(err.value) and "lines 3 and 8" in str(err.value)
    assert err.value.code == "tracker_response"
    path = tmp_path / "ISSUES.md"
    path.write_text(TWICE)
    with pytest.raises(TrackerError, match=r"ISSUES\.md has two issues 'ENG-1'"):
        await FileTracker(path).move("ENG-1", "review", marker="tether-run:r:s")
    assert path.read_text() == TWICE  # nothing written to a guessed section


async def test_a_dispatcher_on_duplicate_identifiers_dispatches_nothing_and_says_why(
    database_url: str, tmp_path: Path
) -> None:
    issues = tmp_path / "ISSUES.md"
    issues.write_text(TWICE)
    workflow = _workflow(tmp_path)
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, workflow, tracker=FileTracker(issues))
        report = await d.tick()
        assert report.dispatched == [] and report.skipped == {}, report
        assert any("two issues 'ENG-1'" in e and "lines 3 and 8" in e for e in report.errors)
        issues.write_text(
            TWICE.replace("## ENG-1: Write the farewell", "## ENG-2: Write the farewell")
        )
        report = await d.tick()
        assert sorted(report.dispatched) == ["ENG-1", "ENG-2"] and report.errors == []


@pytest.mark.parametrize(
    ("written", "priority"),
    [
        ("urgent", 1),
        ("High", 2),
        ("medium", 3),
        ("low", 4),
        ("none", None),
        ("No Priority", None),
        ("0", None),  # Linear's 0 is "no priority", as the linear tracker reads it
        ("2", 2),
        ("", None),
    ],
)
def test_a_priority_is_read_as_linear_numbers_it(written: str, priority: int | None) -> None:
    """Before: `priority: high` was silently no priority, sorted after every numbered one."""
    [issue] = parse_issues(f"## A-1: a\n- status: todo\n- priority: {written}\n")
    assert issue.priority == priority


def test_an_unknown_priority_word_is_refused_naming_the_line_and_the_values() -> None:
    with pytest.raises(TrackerError) as err:
        parse_issues("## A-1: a\n- status: todo\n- priority: hgih\n", source="ISSUES.md")
    text = str(err.value)
    assert text.startswith("ISSUES.md line 3: A-1 has priority 'hgih'"), text
    assert "urgent, high, medium, low, none" in text


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("{% for l in issue.labels %}{{ l.name }}{% endfor %}", "l.name (line 1)"),
        (
            "Labels:\n{% for l in issue.labels %}{% if l == 'bug' %}\n{{ l.title | upcase }}"
            "{% endif %}{% endfor %}",
            "l.title (line 3)",
        ),
        ("{% for b in issue.blocked_by %}{{ b.title }}{% endfor %}", "b.title (line 1)"),
        ("{% tablerow l in issue.labels %}{{ l.name }}{% endtablerow %}", "l.name (line 1)"),
        (
            "{% for l in issue.labels %}{% for b in issue.blocked_by %}{{ b.id }}{% endfor %}"
            "{{ l.id }}{% endfor %}",
            "l.id (line 1)",
        ),
    ],
)
def test_a_field_of_a_label_or_blocker_it_lacks_is_refused_at_load(prompt: str, named: str) -> None:
    """Before: the load check passed it; every issue without labels rendered, and every
    attempt of an issue with one failed ("l.name is undefined") until it waited for a
    person."""
    with pytest.raises(TemplateError) as err:
        parse_workflow(FRONT + prompt)
    assert err.value.code == "template_render_error"
    assert f"uses {named}" in str(err.value), str(err.value)


def test_what_labels_and_blockers_do_have_still_loads_and_renders() -> None:
    prompt = (
        "{% for l in issue.labels %}[{{ l }}:{{ l.size }}:{{ forloop.index }}]{% endfor %}"
        "{% for b in issue.blocked_by %}({{ b.identifier }} {{ b.state }}){% endfor %}"
        "{% for l in issue.blocked_by %}{{ l.id }}{% endfor %}"
    )
    wf = parse_workflow(FRONT + prompt)
    issue = Issue.from_dict(
        {
            "id": "1",
            "identifier": "A-1",
            "title": "t",
            "state": "todo",
            "labels": ["bug"],
            "blocked_by": [{"id": "9", "identifier": "A-9", "state": "done"}],
        }
    )
    assert render_prompt(wf.prompt, issue, None) == "[bug:3:1](A-9 done)9"


async def test_a_lasting_fetch_error_is_not_logged_at_info_every_tick(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`tether agents run` with ISSUES.md missing. Before: besides the one warning
    naming the error, every poll (5 a second at 200 ms) logged "candidate fetch failed;
    no dispatch this tick issue=None" at info, without the reason."""
    issues = tmp_path / "ISSUES.md"  # not there
    workflow = _workflow(tmp_path)
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, workflow, tracker=FileTracker(issues))
        caplog.set_level("DEBUG", logger="tether")
        for _ in range(3):
            report = await d.tick()
            assert any("cannot read the issues file" in e for e in report.errors)
    said = [r for r in caplog.records if "candidate fetch failed" in r.getMessage()]
    assert len(said) == 3 and all(r.levelname == "DEBUG" for r in said), said
    assert all(getattr(r, "issue", "") is not None for r in caplog.records)


async def test_the_state_api_says_why_nothing_is_dispatched(
    database_url: str, tmp_path: Path
) -> None:
    """`GET /api/v1/state` of a dispatcher whose ISSUES.md has a duplicate identifier.
    Before: zero running, zero retrying and nothing else: idle and well, to a dashboard."""
    issues = tmp_path / "ISSUES.md"
    issues.write_text(TWICE)
    workflow = _workflow(tmp_path)
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, workflow, tracker=FileTracker(issues))
        assert (await d.state_report())["errors"] == []
        await d.tick()
        [error] = (await d.state_report())["errors"]
        assert error.startswith("fetching candidates: ") and "two issues 'ENG-1'" in error
        issues.write_text(TWICE.replace("## ENG-1: Write the farewell", "## ENG-2: Farewell"))
        await d.tick()
        state = await d.state_report()
        assert state["errors"] == [] and state["counts"]["running"] == 2, state
