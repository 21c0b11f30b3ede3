"""WORKFLOW.md: front matter, defaults, $VAR secrets, errors naming key and fix,
strict Liquid, and a watcher that keeps the last good config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.agents import (
    Issue,
    TemplateError,
    WorkflowFileError,
    WorkflowWatcher,
    load_workflow,
    parse_workflow,
    render_prompt,
)

ISSUE = Issue(id="1", identifier="ENG-1", title="Fix it", state="Todo")


def test_defaults_follow_the_reference() -> None:
    wf = parse_workflow("---\ntracker: {kind: linear, team: ENG, api_key: k}\n---\n")
    c = wf.config
    assert c.polling.interval_ms == 30_000 and c.hooks.timeout_ms == 60_000
    assert (c.agent.max_concurrent_agents, c.agent.max_turns, c.agent.max_retry_backoff_ms) == (
        10,
        20,
        300_000,
    )
    assert c.agent.stall_timeout_ms == 300_000 and c.tracker.active() == ["Todo", "In Progress"]
    assert wf.prompt == "You are working on an issue from the configured tracker."


def test_a_secret_comes_from_the_environment_and_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN_X", "s3cret")
    wf = parse_workflow("---\ntracker: {kind: github, repo: a/b, api_key: $TOKEN_X}\n---\nhi")
    assert wf.config.tracker.api_key is not None
    assert wf.config.tracker.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(wf.config) and "s3cret" not in str(wf.config.model_dump())
    monkeypatch.setenv("TOKEN_X", "")
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow("---\ntracker: {kind: github, api_key: $TOKEN_X}\n---\nhi")
    assert err.value.code == "missing_secret" and "TOKEN_X" in str(err.value)


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("---\ntracker: [1]\n---\n", "invalid_config", "tracker"),
        ("---\n- a\n---\n", "workflow_front_matter_not_a_map", "map"),
        ("---\ntracker: {kind: file\n---\n", "workflow_parse_error", "YAML"),
        ("---\ntracker: {kind: file}\n", "workflow_parse_error", "never closed"),
        ("---\ntracker: {kind: jira}\n---\n", "invalid_config", "tracker.kind"),
        (
            "---\ntracker: {kind: memory}\nagent: {max_turns: 0}\n---\n",
            "invalid_config",
            "agent.max_turns",
        ),
        (
            "---\ntracker: {kind: memory}\nagent: {max_turn: 3}\n---\n",
            "invalid_config",
            "check its spelling",
        ),
        ("---\ntracker: {kind: file}\n---\n", "invalid_config", "tracker.path"),
        ("---\ntracker: {kind: memory}\n---\n{% if x %", "template_parse_error", "parse"),
    ],
)
def test_errors_name_the_key_and_the_fix(text: str, code: str, words: str) -> None:
    with pytest.raises((WorkflowFileError, TemplateError)) as err:
        parse_workflow(text)
    assert err.value.code == code and words in str(err.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError) as err:
        load_workflow(tmp_path / "WORKFLOW.md")
    assert err.value.code == "missing_workflow_file"


def test_relative_paths_resolve_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "WORKFLOW.md").write_text(
        "---\ntracker: {kind: file, path: ISSUES.md}\nworkspace: {root: ws}\n---\n"
    )
    wf = load_workflow(tmp_path / "WORKFLOW.md")
    assert wf.config.tracker.path == str((tmp_path / "ISSUES.md").resolve())
    assert wf.workspace_root == (tmp_path / "ws").resolve()


def test_liquid_is_strict_about_variables_and_filters() -> None:
    assert (
        render_prompt("{{ issue.identifier }}: {{ issue.title }}", ISSUE, None) == "ENG-1: Fix it"
    )
    guarded = "{% if issue.description %}d{% endif %}{% if attempt %}retry {{ attempt }}{% endif %}"
    assert render_prompt(guarded, ISSUE, None) == ""  # None reads as nil, not undefined
    assert render_prompt(guarded, ISSUE, 2) == "retry 2"
    with pytest.raises(TemplateError) as e1:
        render_prompt("{{ issue.titel }}", ISSUE, None)
    assert e1.value.code == "template_render_error"
    with pytest.raises(TemplateError):
        render_prompt("{{ issue.title | shout }}", ISSUE, None)


def test_the_watcher_applies_valid_changes_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\ntracker: {kind: memory}\npolling: {interval_ms: 1000}\n---\none")
    w = WorkflowWatcher(path)
    path.write_text("---\ntracker: {kind: memory}\npolling: {interval_ms: 2000}\n---\ntwo!")
    os.utime(path, (1, 1))
    assert w.check() and w.current.config.polling.interval_ms == 2000 and w.current.prompt == "two!"
    path.write_text("---\ntracker: {kind: memory}\npolling: {interval_ms: -5}\n---\nthree")
    assert not w.check() and w.current.prompt == "two!"
    assert w.error is not None and "polling.interval_ms" in w.error


@pytest.mark.parametrize(
    ("front", "words"),
    [
        ("server: {port: 70000}", "server.port"),
        ("agent: {max_concurrent_agents: true}", "must not be true"),
        ("polling: {interval_ms: false}", "must not be false"),
        ("tracker: {kind: memory, active_states: []}", "active_states is empty"),
        (
            "tracker: {kind: memory, active_states: [todo], terminal_states: [Todo]}",
            "'todo' is in both",
        ),
        (
            "tracker: {kind: memory, active_states: [todo, doing], handoff_state: Doing}",
            "handoff_state 'Doing' is an active state",
        ),
    ],
)
def test_values_that_cannot_work_are_refused(front: str, words: str) -> None:
    tracker = "" if front.startswith("tracker") else "tracker: {kind: memory}\n"
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(f"---\n{tracker}{front}\n---\nhi")
    assert err.value.code == "invalid_config" and words in str(err.value)


def test_a_workspace_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """Before: accepted, then every attempt failed on ``FileExistsError`` and was
    retried until a person was asked, the message naming no setting."""
    (tmp_path / "ws").write_text("not a folder")
    text = "---\ntracker: {kind: memory}\nworkspace: {root: ws}\n---\nhi"
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    assert err.value.code == "invalid_config"
    assert "workspace.root" in str(err.value) and "is a file, not a folder" in str(err.value)
    assert parse_workflow(text.replace("ws}", "ws2}"), path=tmp_path / "WORKFLOW.md")
