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
        # each says which file, where in the prompt, and a misspelt choice's near match
        (
            "---\ntracker: {kind: memory}\n---\nhi\n{% if issue.title %}\nx\n",
            "template_parse_error",
            "WORKFLOW.md: the prompt template does not parse: expected tag endif, found end "
            "of expression (a block the prompt opens is never closed: add its end tag)",
        ),
        (
            "---\ntracker: {kind: memory}\n---\na\n{% fi %}\n",
            "template_parse_error",
            "unexpected tag 'fi' (line 2)",
        ),
        (
            "---\ntracker: {kind: memory}\n---\n{{ issue.titel }}",
            "template_render_error",
            "WORKFLOW.md: the prompt template uses issue.titel",
        ),
        (
            "---\ntracker: {kind: memory}\nagent: {backend: comand}\n---\n",
            "invalid_config",
            "(got 'comand'; did you mean 'command'?)",
        ),
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


def test_an_edit_of_the_same_size_and_mtime_is_seen(tmp_path: Path) -> None:
    """A typo made and fixed within one tick of a coarse file clock keeps the size and
    the mtime: both edits must still be read."""
    path = tmp_path / "WORKFLOW.md"

    def save(agent: str) -> None:
        path.write_text(f"---\ntracker: {{kind: memory}}\n{agent}\n---\nx")
        os.utime(path, (1, 1))

    save("agent: {max_turns: 2}")
    w = WorkflowWatcher(path)
    save("agnet: {max_turns: 3}")
    assert not w.check() and w.error is not None and "agent" in w.error
    save("agent: {max_turns: 3}")
    assert w.check() and w.error is None and w.current.config.agent.max_turns == 3


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


def test_states_may_be_a_comma_separated_string_as_in_symphony() -> None:
    """Symphony's schema takes `active_states` and `terminal_states` as a list or a
    comma-separated string; a WORKFLOW.md written for it was refused ("Input should
    be a valid list")."""
    wf = parse_workflow(
        "---\ntracker: {kind: memory, active_states: 'Todo, In Progress',"
        " terminal_states: Done}\n---\nhi"
    )
    assert wf.config.tracker.active() == ["Todo", "In Progress"]
    assert wf.config.tracker.terminal() == ["Done"]
    assert wf.config.tracker.is_active("in progress") and wf.config.tracker.is_terminal("done")


@pytest.mark.parametrize(
    ("section", "meant"),
    [("agnet", "agent"), ("hook", "hooks"), ("workspaces", "workspace"), ("Polling", "polling")],
)
def test_a_misspelt_section_is_refused_naming_the_one_meant(section: str, meant: str) -> None:
    """Before: ignored as an unknown key, so ``agnet: {backend: mock}`` silently ran
    the default agent (codex) and ``hook:`` ran no hook."""
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(f"---\ntracker: {{kind: memory}}\n{section}: {{}}\n---\nhi")
    assert err.value.code == "invalid_config"
    assert f"'{section}'" in str(err.value) and f"did you mean '{meant}'" in str(err.value)


def test_other_unknown_sections_are_still_ignored() -> None:
    """Symphony's rule for what is not a misspelling: extensions of other tools."""
    wf = parse_workflow("---\ntracker: {kind: memory}\nobservability: {refresh_ms: 5}\n---\nhi")
    assert wf.config.tracker.kind == "memory"


def test_symphonys_codex_section_is_refused_saying_where_its_keys_go() -> None:
    """Before: ignored, so a Symphony file's ``codex: {command: ...}`` ran tether's
    default command and its timeouts were not applied, silently."""
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow("---\ntracker: {kind: memory}\ncodex: {stall_timeout_ms: 0}\n---\nhi")
    assert err.value.code == "invalid_config" and "under agent:" in str(err.value)
    # a file shared with Symphony that chooses tether's agent keeps its codex: section
    shared = "tracker: {kind: memory}\ncodex: {command: x}\nagent: {backend: mock}"
    assert parse_workflow(f"---\n{shared}\n---\nhi").config.agent.backend == "mock"


def test_a_misspelt_key_of_a_section_names_the_key_meant() -> None:
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow("---\ntracker: {kind: memory}\nagent: {max_concurent_agents: 3}\n---\n")
    assert "agent.max_concurent_agents" in str(err.value)
    assert "did you mean agent.max_concurrent_agents?" in str(err.value)


def test_a_yaml_error_names_the_line_of_the_file() -> None:
    """Before: YAML's own count, from the front matter's first line (the file's second),
    and its "<unicode string>": line 3 of the file was reported as line 2."""
    text = "---\ntracker: {kind: memory}\nagent:\n  backend: mock\n   max_turns: 3\n---\nhi"
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(text, path=Path("/x/WORKFLOW.md"))
    assert err.value.code == "workflow_parse_error"
    message = str(err.value)
    assert "line 5, column 13" in message and "mapping values are not allowed" in message
    assert "unicode string" not in message


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (
            "Fix {{ issue.titel }}",
            "uses issue.titel (line 1), which no issue has; did you mean issue.title?",
        ),
        ("A\n{% if attempt %}{{ atempt }}{% endif %}", "uses atempt (line 2)"),
        ("{{ isue.title }}", "uses isue (line 1), which no issue has; did you mean issue.title?"),
        ("{{ issue.title | shout }}", "the filter 'shout' (line 1)"),
    ],
)
def test_a_name_no_prompt_can_have_is_refused_when_the_file_is_read(
    prompt: str, words: str
) -> None:
    """Before: the file loaded, then every attempt of every issue failed on it and was
    retried (10 s, 20 s, 40 s ...) until each issue waited for a person."""
    with pytest.raises(TemplateError) as err:
        parse_workflow(f"---\ntracker: {{kind: memory}}\n---\n{prompt}")
    assert err.value.code == "template_render_error" and words in str(err.value)


def test_locals_loops_and_every_issue_field_are_known() -> None:
    prompt = (
        "{% assign t = issue.title | upcase %}{{ t }} {{ issue.labels.size }}"
        "{% for b in issue.blocked_by %}{{ forloop.index }} {{ b.identifier }}{% endfor %}"
        "{% if attempt %}{{ attempt }}{% endif %}{{ issue.url }}"
    )
    wf = parse_workflow(f"---\ntracker: {{kind: memory}}\n---\n{prompt}")
    assert render_prompt(wf.prompt, ISSUE, 2) == "FIX IT 02"


def test_a_cap_on_a_state_that_is_not_active_is_refused() -> None:
    """Before: accepted, and never applied (agents are counted by their issue's state,
    always an active one): ``in-progress`` for ``In Progress`` ran as many as the
    global cap allowed."""
    front = (
        "tracker: {kind: memory, active_states: [Todo, In Progress]}\n"
        "agent: {max_concurrent_agents_by_state: {in-progress: 1}}"
    )
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(f"---\n{front}\n---\nhi")
    assert err.value.code == "invalid_config"
    message = str(err.value)
    assert "max_concurrent_agents_by_state caps state 'in-progress'" in message
    assert "did you mean 'in progress'?" in message
    ok = parse_workflow(f"---\n{front.replace('in-progress', 'In Progress ')}\n---\nhi")
    assert ok.config.agent.max_concurrent_agents_by_state == {"in progress": 1}


def test_a_blank_required_label_is_refused() -> None:
    """Symphony: a blank required label matches no issue. Before: it was dropped, so
    ``required_labels: [" "]`` dispatched every issue of the tracker."""
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow("---\ntracker: {kind: memory, required_labels: [agent, ' ']}\n---\nhi")
    assert err.value.code == "invalid_config"
    assert "tracker.required_labels" in str(err.value) and "blank" in str(err.value)


def test_a_per_state_cap_of_true_or_twice_the_same_state_is_refused() -> None:
    """Before: ``{todo: true}`` was read as a cap of 1 (the check for a boolean ran after
    pydantic had made it 1), and ``{Todo: 1, todo: 5}`` kept 5 without a word."""
    base = "tracker: {kind: memory}\nagent: {max_concurrent_agents_by_state: %s}"
    for caps, says in (
        ("{todo: true}", "must be an integer > 0, got True"),
        ("{Todo: 1, ' todo': 5}", "'Todo' and ' todo' are the same state"),
    ):
        with pytest.raises(WorkflowFileError) as err:
            parse_workflow(f"---\n{base % caps}\n---\nhi")
        assert err.value.code == "invalid_config" and says in str(err.value)


def test_a_workflow_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Before: an editor's UTF-8 byte order mark hid the front matter (line 1 was not
    exactly ``---``): the whole file became the prompt and loading said "tracker is
    missing" of a file that has one."""
    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\ntracker: {kind: memory}\nagent: {max_turns: 3}\n---\nDo it.", "utf-8-sig")
    wf = load_workflow(path)
    assert (wf.config.agent.max_turns, wf.prompt) == (3, "Do it.")
    assert parse_workflow(path.read_text("utf-8")).config.agent.max_turns == 3


def test_a_braced_variable_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``api_key: ${LINEAR_API_KEY}`` (as a shell writes it): before, only ``$NAME``
    was read, so the text ``${LINEAR_API_KEY}`` itself went out as the key and Linear
    refused it; an unset one is an error naming the variable, as ``$NAME``'s is."""
    monkeypatch.setenv("LIN_KEY_X", "lin_s3cret")
    front = "---\ntracker: {kind: linear, team: ENG, api_key: '${LIN_KEY_X}'}\n---\n"
    key = parse_workflow(front).config.tracker.api_key
    assert key is not None and key.get_secret_value() == "lin_s3cret"
    monkeypatch.delenv("LIN_KEY_X")
    with pytest.raises(WorkflowFileError, match=r"\$LIN_KEY_X.*not set") as err:
        parse_workflow(front)
    assert err.value.code == "missing_secret"


@pytest.mark.parametrize("value", ["", None])
def test_a_path_using_an_unset_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """``root: $WS_ROOT_X/agents`` with the variable unset: before, the workspaces
    went to a folder literally named ``$WS_ROOT_X`` beside WORKFLOW.md (empty: to
    ``/agents``); now it is refused naming the variable. Set, it expands."""
    if value is None:
        monkeypatch.delenv("WS_ROOT_X", raising=False)
    else:
        monkeypatch.setenv("WS_ROOT_X", value)
    text = "---\ntracker: {kind: file, path: I.md}\nworkspace: {root: '${WS_ROOT_X}/agents'}\n---\n"
    with pytest.raises(WorkflowFileError, match=r"workspace.root uses \$WS_ROOT_X") as err:
        parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    assert err.value.code == "invalid_config"
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("WS_ROOT_X", str(tmp_path / "shared"))
    wf = parse_workflow(text.replace("${WS_ROOT_X}", "$WS_ROOT_X"), path=tmp_path / "WORKFLOW.md")
    assert wf.workspace_root == tmp_path / "shared" / "agents"


@pytest.mark.parametrize("kind", ["github", "linear"])
@pytest.mark.parametrize("key", ["''", "'   '", "$BLANK_KEY_X", "'${BLANK_KEY_X}'", None])
def test_a_blank_tracker_key_is_missing_at_load(
    monkeypatch: pytest.MonkeyPatch, kind: str, key: str | None
) -> None:
    """Before: ``api_key: ''``, a key of spaces, or a variable (GITHUB_TOKEN too)
    holding only spaces passed the check; the factory caught '' only, and a key of
    spaces was sent and refused (HTTP 401) on every tick. Now each is missing."""
    monkeypatch.setenv("BLANK_KEY_X", "  \t")
    monkeypatch.setenv("GITHUB_TOKEN", " ")
    monkeypatch.setenv("LINEAR_API_KEY", " ")
    where = "repo: acme/api" if kind == "github" else "team: ENG"
    given = "" if key is None else f", api_key: {key!s}"
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(f"---\ntracker: {{kind: {kind}, {where}{given}}}\n---\nhi")
    variable = key is not None and "BLANK_KEY_X" in key
    assert err.value.code == ("missing_secret" if variable else "missing_tracker_secret")
    assert ("BLANK_KEY_X" in str(err.value) and "blank" in str(err.value)) or not variable


@pytest.mark.parametrize("repo", ["acme", "acme/", "/api", "acme/api/x", "'acme /api'"])
def test_a_github_repo_without_owner_and_name_is_refused_at_load(tmp_path: Path, repo: str) -> None:
    """Before: ``repo: acme`` passed WORKFLOW.md validation and only building the
    tracker refused it (`invalid_tracker_config`), so a hot reload took it as good."""
    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\ntracker: {kind: github, repo: acme/api, api_key: k}\n---\none")
    w = WorkflowWatcher(path)
    path.write_text(f"---\ntracker: {{kind: github, repo: {repo}, api_key: k}}\n---\ntwo")
    os.utime(path, (1, 1))
    assert not w.check() and w.current.prompt == "one"
    assert w.error is not None and "tracker.repo must be 'owner/name'" in w.error
    with pytest.raises(WorkflowFileError) as err:
        load_workflow(path)
    assert err.value.code == "invalid_config"
