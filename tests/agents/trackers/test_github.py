"""The github tracker against a real local HTTP server speaking GitHub's REST shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tether
import tether.agents
from tether.agents import Dispatcher, TrackerError, parse_workflow
from tether.agents._factory import make_tracker
from tether.agents.backends import MockBackend
from tether.agents.trackers import GitHubTracker, rate_limit_wait

from ._servers import FakeGitHub, reset_in


def _tracker(fake: FakeGitHub, **kw: object) -> GitHubTracker:
    return GitHubTracker(
        "acme/api",
        fake.token,
        endpoint=fake.base,
        required_labels=kw.pop("required_labels", ("agent",)),  # type: ignore[arg-type]
        states=("open", "in progress", "review", "closed"),
    )


async def test_candidates_are_open_labelled_issues_across_pages_without_pulls(
    github: FakeGitHub,
) -> None:
    for n in range(1, 251):
        github.add(n, f"issue {n}", labels=("agent", "p2") if n % 2 else ("other",))
    github.add(300, "a pull request", labels=("agent",), pull=True)
    github.add(301, "closed", labels=("agent",), state="closed")
    github.add(302, "taken", labels=("Agent", "In Progress"), assignee={"login": "bot"}, body="x")
    found = await _tracker(github).fetch_issues_by_states(["open", "in progress"])
    assert [i.id for i in found][:3] == ["1", "3", "5"] and len(found) == 126
    assert sum(1 for r in github.requests if r[0] == "GET") == 2  # 100 a page, Link: next
    first = found[0]
    assert (first.identifier, first.state, first.priority, first.labels) == (
        "api#1",
        "open",
        2,
        ("agent", "p2"),
    )
    assert first.url == "https://github.com/acme/api/issues/1" and first.created_at
    taken = found[-1]
    assert (taken.state, taken.assignee_id, taken.description) == ("in progress", "bot", "x")
    assert await _tracker(github).fetch_issues_by_states(["open"]) == found[:-1]
    closed = await _tracker(github).fetch_issues_by_states(["closed"])
    assert [(i.id, i.state) for i in closed] == [("301", "closed")]
    assert await _tracker(github).fetch_issues_by_states([]) == []


async def test_fetch_by_ids_omits_the_missing_and_pull_requests(github: FakeGitHub) -> None:
    github.add(1, "one", labels=("agent",))
    github.add(2, "two", state="closed")
    github.add(3, "a pull", pull=True)
    found = await _tracker(github).fetch_issues_by_ids(["2", "1", "3", "404", "1", "nan"])
    assert [(i.id, i.state) for i in found] == [("2", "closed"), ("1", "open")]
    assert await _tracker(github).fetch_issues_by_ids([]) == []


async def test_a_comment_carries_its_marker_and_is_never_posted_twice(github: FakeGitHub) -> None:
    github.add(7, "seven", labels=("agent",))
    tracker = _tracker(github)
    github.drop_next_write = True  # the POST lands, the answer is lost (a crash)
    with pytest.raises(TrackerError) as err:
        await tracker.comment("7", "done: see the PR", marker="tether-run:r1:comment")
    assert err.value.code == "tracker_request"
    await tracker.comment("7", "done: see the PR", marker="tether-run:r1:comment")  # the retry
    await tracker.comment("7", "done: see the PR", marker="tether-run:r1:comment")
    assert [c["body"] for c in github.comments[7]] == [
        "done: see the PR\n\n<!-- tether-run:r1:comment -->"
    ]
    await tracker.comment("7", "another", marker="tether-run:r1:comment#2")
    assert len(github.comments[7]) == 2


async def test_moves_use_labels_and_open_closed_and_are_idempotent(github: FakeGitHub) -> None:
    github.add(5, "five", labels=("agent", "in progress"))
    tracker = _tracker(github)
    await tracker.move("5", "review", marker="m1")
    [issue] = await tracker.fetch_issues_by_ids(["5"])
    assert issue.state == "review" and issue.labels == ("agent", "review")
    patches = sum(1 for r in github.requests if r[0] == "PATCH")
    await tracker.move("5", "Review", marker="m1")  # already there: nothing written
    assert sum(1 for r in github.requests if r[0] == "PATCH") == patches
    await tracker.move("5", "closed", marker="m2")
    [issue] = await tracker.fetch_issues_by_ids(["5"])
    assert issue.state == "closed"
    await tracker.move("5", "open", marker="m3")
    [issue] = await tracker.fetch_issues_by_ids(["5"])
    assert issue.state == "open" and issue.labels == ("agent",)


async def test_rate_limits_and_refusals_are_tracker_errors(github: FakeGitHub) -> None:
    tracker = _tracker(github)
    github.rate_limit_next = reset_in(120)
    with pytest.raises(TrackerError) as err:
        await tracker.fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_rate_limited"
    assert err.value.retry_after is not None and 100 < err.value.retry_after <= 121
    github.rate_limit_next = {"retry-after": "30"}
    with pytest.raises(TrackerError) as err:
        await tracker.fetch_issues_by_ids(["1"])
    assert err.value.retry_after == 30
    bad = GitHubTracker("acme/api", "wrong", endpoint=github.base)
    with pytest.raises(TrackerError) as err:
        await bad.fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_status" and "Bad credentials" in str(err.value)
    assert "wrong" not in repr(bad)
    gone = GitHubTracker("acme/nope", github.token, endpoint=github.base)
    with pytest.raises(TrackerError) as err:
        await gone.fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_response"


async def test_a_list_holding_what_is_no_issue_is_a_tracker_error(github: FakeGitHub) -> None:
    """Before: a null or a number in the list raised ``TypeError: argument of type 'int'
    is not iterable``, which named neither the tracker nor the answer."""
    github.add(1, "one", labels=("agent",))
    tracker = _tracker(github, required_labels=())
    original = github.answer

    def garbage(method: str, path: str, headers: dict[str, str], body: object) -> object:
        answer = original(method, path, headers, body)
        assert answer is not None
        status, extra, payload = answer
        return status, extra, [*payload, None, 5] if isinstance(payload, list) else payload

    github.answer = garbage  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await tracker.fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_response" and "without a number" in str(err.value)


def test_rate_limit_headers() -> None:
    assert rate_limit_wait(200, {"x-ratelimit-remaining": "0"}) is None
    assert rate_limit_wait(403, {"x-ratelimit-remaining": "12"}) is None  # a plain refusal
    assert (
        rate_limit_wait(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1060"}, now=1000)
        == 60
    )
    assert rate_limit_wait(429, {"retry-after": "7"}) == 7
    assert rate_limit_wait(429, {"x-ratelimit-requests-reset": "5000000"}, now=4000) == 1000
    assert rate_limit_wait(429, {}) == 60


def test_the_workflow_builds_it_from_the_token_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "from-env")
    wf = parse_workflow(
        "---\ntracker: {kind: github, repo: acme/api, api_key: $GITHUB_TOKEN,"
        " required_labels: [Agent], handoff_state: review}\n---\nhi",
        path=tmp_path / "WORKFLOW.md",
    )
    tracker = make_tracker(wf)
    assert isinstance(tracker, GitHubTracker)
    assert tracker.required_labels == ("agent",) and tracker.state_labels == ("review",)
    assert "from-env" not in repr(tracker) and "from-env" not in repr(wf.config)
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(Exception) as err:
        parse_workflow("---\ntracker: {kind: github, repo: acme/api}\n---\nhi")
    assert getattr(err.value, "code", None) == "missing_tracker_secret"
    with pytest.raises(Exception) as err:
        parse_workflow("---\ntracker: {kind: github, api_key: x}\n---\nhi")
    assert "tracker.repo" in str(err.value)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tether.App]:
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


def _workflow(github: FakeGitHub, tmp: Path) -> tether.agents.WorkflowFile:
    return parse_workflow(
        f"""---
tracker: {{kind: github, repo: acme/api, endpoint: "{github.base}", api_key: {github.token},
          required_labels: [agent], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
Fix {{{{ issue.identifier }}}}: {{{{ issue.title }}}}""",
        path=tmp / "WORKFLOW.md",
    )


async def test_the_dispatcher_works_github_issues_and_respects_its_rate_limit(
    app: tether.App, github: FakeGitHub, tmp_path: Path
) -> None:
    github.add(1, "Fix the typo", labels=("agent",))
    github.add(2, "Not for agents")
    backend = MockBackend([{"files": {"fix.txt": "fixed"}}])
    d = Dispatcher(app, _workflow(github, tmp_path), backend=backend)
    report = await d.run_once()
    assert (
        report.dispatched == ["api#1"] and backend.requests[0].prompt == "Fix api#1: Fix the typo"
    )
    assert [lab["name"] for lab in github.issues[1]["labels"]] == ["agent", "review"]
    assert (await app.aget_run("agent:github:api#1")).status.value == "completed"
    github.rate_limit_next = reset_in(300)
    limited = await d.tick()
    assert any("rate limited" in e for e in limited.errors)
    until = await d.tracker_cooldown()
    assert until is not None
    asked = len(github.requests)
    quiet = await d.tick()  # every dispatcher on this database waits: no request at all
    assert len(github.requests) == asked and "rate-limited until" in quiet.errors[0]
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    clock.advance(301)
    assert await d.tracker_cooldown() is None
    again = await d.tick()
    assert again.errors == [] and len(github.requests) > asked


async def test_a_transient_failure_of_the_hand_off_is_retried_not_a_failed_run(
    app: tether.App, github: FakeGitHub, tmp_path: Path
) -> None:
    """A 502, then an answer lost after the write landed: the hand-off step asks
    again (its move finds the issue there already) and the run completes."""
    github.add(6, "Flaky proxy", labels=("agent",))
    github.fail_writes = [502]
    github.drop_next_write = True  # the second PATCH lands, its answer never arrives
    d = Dispatcher(app, _workflow(github, tmp_path), backend=MockBackend([{}]))
    await d.run_once()
    run = await app.aget_run("agent:github:api#6")
    assert run.status.value == "completed", run.error
    assert [lab["name"] for lab in github.issues[6]["labels"]] == ["agent", "review"]
    assert sum(1 for r in github.requests if r[0] == "PATCH") == 2


async def test_a_refused_hand_off_is_not_retried(
    app: tether.App, github: FakeGitHub, tmp_path: Path
) -> None:
    github.add(8, "No rights", labels=("agent",))
    github.fail_writes = [422, 422]
    d = Dispatcher(app, _workflow(github, tmp_path), backend=MockBackend([{}]))
    await d.run_once()
    run = await app.aget_run("agent:github:api#8")
    assert run.status.value == "failed" and "HTTP 422" in (run.error or "")
    assert github.fail_writes == [422]  # asked once


def test_which_tracker_errors_are_worth_asking_again() -> None:
    def err(code: str, status: int | None = None) -> TrackerError:
        return TrackerError("x", code=code, status=status)

    assert err("tracker_request").transient and err("tracker_rate_limited").transient
    assert err("tracker_status", 502).transient and err("tracker_status", 500).transient
    assert not err("tracker_status", 401).transient and not err("tracker_status").transient
    assert not err("tracker_response").transient


async def test_a_user_comment_quoting_a_marker_is_not_taken_for_tethers_own(
    github: FakeGitHub,
) -> None:
    github.add(7, "seven", labels=("agent",))
    tag = "<!-- tether-run:r1:comment -->"
    # a person pastes the raw text of tether's comment, quoted, and answers below it
    github.comments[7] = [{"id": 1, "body": f"> done: see the PR\n>\n> {tag}\n\nwhich PR?"}]
    github.comments[7].append({"id": 2, "body": f"> done\r\n> {tag}"})
    await _tracker(github).comment("7", "done: see the PR", marker="tether-run:r1:comment")
    assert [c["body"] for c in github.comments[7]][2:] == [f"done: see the PR\n\n{tag}"]


async def test_a_token_with_surrounding_whitespace_is_sent_without_it(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Before: ``api_key: "${GITHUB_TOKEN}"`` with the variable ending in a newline
    (``export GITHUB_TOKEN=$(cat token)``... with a file saved by an editor) sent the
    whitespace on, and every request was refused (401) with no hint why."""
    github.add(1, "one", labels=("agent",))
    monkeypatch.setenv("GITHUB_TOKEN", f"{github.token} \r\n")
    wf = parse_workflow(
        f'---\ntracker: {{kind: github, repo: acme/api, endpoint: "{github.base}",'
        ' api_key: "${GITHUB_TOKEN}"}\n---\nhi',
        path=tmp_path / "WORKFLOW.md",
    )
    found = await make_tracker(wf).fetch_issues_by_ids(["1"])
    assert [i.id for i in found] == ["1"]
    assert {r[2].get("Authorization") for r in github.requests} == {f"Bearer {github.token}"}
    literal = wf.config.tracker.model_copy(update={"api_key": None})
    monkeypatch.setenv("GITHUB_TOKEN", f"\t{github.token}\n")  # the kind's variable, no api_key
    from tether.agents._config import tracker_secret

    assert tracker_secret(literal) == github.token
