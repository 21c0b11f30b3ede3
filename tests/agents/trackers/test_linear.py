"""The linear tracker against a real local HTTP server speaking Linear's GraphQL shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.agents import Blocker, Issue, TrackerError, WorkflowFileError, parse_workflow
from tether.agents._factory import make_tracker
from tether.agents.trackers import LinearTracker

from ._servers import FakeLinear, serving


@pytest.fixture
def linear() -> Iterator[tuple[FakeLinear, str]]:
    fake = FakeLinear()
    with serving(fake) as base:
        yield fake, f"{base}/graphql"


def _tracker(where: tuple[FakeLinear, str], **kw: str) -> LinearTracker:
    fake, url = where
    return LinearTracker(fake.key, endpoint=url, **{"project_slug": "proj", **kw})


async def test_candidates_by_project_and_state_across_pages(
    linear: tuple[FakeLinear, str],
) -> None:
    fake, _ = linear
    for n in range(1, 121):
        fake.add(f"ENG-{n:03d}", f"issue {n}", state="s1" if n % 3 else "s2", priority=n % 5)
    fake.add("ENG-900", "elsewhere", project="other")
    fake.add("ENG-901", "done", state="s4")
    fake.add("OPS-1", "blocked", labels=("Agent", " agent "), blocked_by=("uuid-ENG-901",))
    fake.issues["uuid-OPS-1"]["project"] = "proj"
    found = await _tracker(linear).fetch_issues_by_states(["Todo", "In Progress"])
    assert len(found) == 121 and len(fake.requests) == 3  # 50 a page, pageInfo.endCursor
    first = found[0]
    assert (first.id, first.identifier, first.state, first.priority) == (
        "uuid-ENG-001",
        "ENG-001",
        "Todo",
        1,
    )
    assert first.branch_name == "eng/eng-001" and first.extra == {"state_type": "unstarted"}
    assert found[4].priority is None  # Linear's 0: no priority
    blocked = next(i for i in found if i.identifier == "OPS-1")
    assert blocked.labels == ("agent",)
    assert [(b.identifier, b.state) for b in blocked.blocked_by] == [("ENG-901", "Done")]
    by_team = await _tracker(linear, team="ENG").fetch_issues_by_states(["Done"])
    assert [i.identifier for i in by_team] == ["ENG-901"]
    assert await _tracker(linear).fetch_issues_by_states([]) == []


async def test_fetch_by_ids(linear: tuple[FakeLinear, str]) -> None:
    fake, _ = linear
    fake.add("ENG-1", "one", state="s4")
    fake.add("ENG-2", "two")
    found = await _tracker(linear).fetch_issues_by_ids(["uuid-ENG-2", "uuid-ENG-1", "uuid-nope"])
    assert {(i.identifier, i.state) for i in found} == {("ENG-1", "Done"), ("ENG-2", "Todo")}
    assert await _tracker(linear).fetch_issues_by_ids([]) == []


async def test_writes_find_their_marker_before_writing_again(
    linear: tuple[FakeLinear, str],
) -> None:
    fake, _ = linear
    fake.add("ENG-1", "one", state="s2")
    tracker = _tracker(linear)
    fake.drop_next_write = True  # the mutation lands, the answer is lost
    with pytest.raises(TrackerError):
        await tracker.comment("uuid-ENG-1", "handed off", marker="tether-run:r:c")
    await tracker.comment("uuid-ENG-1", "handed off", marker="tether-run:r:c")
    assert fake.comments["uuid-ENG-1"] == ["handed off\n\n<!-- tether-run:r:c -->"]
    await tracker.move("uuid-ENG-1", "human review", marker="m")
    assert fake.issues["uuid-ENG-1"]["state"] == "s3"
    moves = sum(1 for r in fake.requests if "TetherMove" in r[3]["query"])
    await tracker.move("uuid-ENG-1", "Human Review", marker="m")  # there already
    assert sum(1 for r in fake.requests if "TetherMove" in r[3]["query"]) == moves
    with pytest.raises(TrackerError) as err:
        await tracker.move("uuid-ENG-1", "Shipped", marker="m2")
    assert "no state named 'Shipped'" in str(err.value)


async def test_rate_limits_and_errors(linear: tuple[FakeLinear, str]) -> None:
    fake, url = linear
    fake.rate_limit_next = True
    with pytest.raises(TrackerError) as err:
        await _tracker(linear).fetch_issues_by_states(["Todo"])
    assert err.value.code == "tracker_rate_limited" and err.value.retry_after == 60
    wrong = LinearTracker("nope", project_slug="proj", endpoint=url)
    with pytest.raises(TrackerError) as err:
        await wrong.fetch_issues_by_states(["Todo"])
    assert err.value.code == "tracker_response" and "Authentication required" in str(err.value)
    assert "nope" not in repr(wrong)
    with pytest.raises(TrackerError) as err:
        LinearTracker("k")
    assert err.value.code == "invalid_tracker_config"


def test_the_workflow_builds_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LINEAR_API_KEY", "lin-secret")
    wf = parse_workflow("---\ntracker: {kind: linear, team: ENG}\n---\nhi")
    tracker = make_tracker(wf)
    assert isinstance(tracker, LinearTracker) and tracker.team == "ENG"
    assert wf.config.tracker.active() == ["Todo", "In Progress"]
    with pytest.raises(Exception) as err:
        parse_workflow("---\ntracker: {kind: linear}\n---\nhi")
    assert "project_slug or tracker.team" in str(err.value)


def test_a_node_becomes_an_issue_field_by_field() -> None:
    """Every field of a GraphQL node lands where Issue keeps it (the node is read
    through `Issue.from_dict`, so a missed rename would drop a field silently)."""
    node = {
        "id": "uuid-1",
        "identifier": "ENG-1",
        "title": "Fix it",
        "description": "",
        "priority": 2.0,
        "url": "https://linear.app/x/ENG-1",
        "branchName": "eng-1-fix-it",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-02T00:00:00Z",
        "state": {"name": "In Progress", "type": "started"},
        "assignee": {"id": "user-2"},
        "labels": {"nodes": [{"name": " Agent "}, {"name": "agent"}, {"name": "Bug"}]},
        "inverseRelations": {
            "nodes": [
                {"type": "blocks", "issue": {"id": "u9", "identifier": "ENG-9", "state": None}},
                {"type": "related", "issue": {"id": "u8", "identifier": "ENG-8"}},
            ]
        },
    }
    mine = LinearTracker("k", team="ENG", assignee="user-1").normalise(node)
    assert mine == Issue(
        id="uuid-1",
        identifier="ENG-1",
        title="Fix it",
        state="In Progress",
        description=None,
        priority=2,
        labels=("agent", "bug"),
        blocked_by=(Blocker("u9", "ENG-9", None),),
        dispatchable=False,  # assigned to another user
        url="https://linear.app/x/ENG-1",
        branch_name="eng-1-fix-it",
        assignee_id="user-2",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-02T00:00:00Z",
        extra={"state_type": "started"},
    )
    assert type(mine.priority) is int
    anyone = LinearTracker("k", team="ENG").normalise({**node, "priority": 0})
    assert (anyone.dispatchable, anyone.priority) == (True, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("labels", ["agent"]), ("inverseRelations", {"nodes": [None]}), ("assignee", "someone")],
)
async def test_a_field_of_another_shape_is_a_malformed_issue(
    linear: tuple[FakeLinear, str], field: str, value: object
) -> None:
    """Before: ``AttributeError: 'list' object has no attribute 'get'``, naming neither
    the tracker nor the issue."""
    fake, _ = linear
    fake.add("ENG-1", "one")
    node = fake.node

    def odd(issue_id: str) -> dict[str, object]:
        return {**node(issue_id), field: value}

    fake.node = odd  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await _tracker(linear).fetch_issues_by_states(["Todo"])
    assert err.value.code == "tracker_response" and "malformed issue" in str(err.value)


async def test_states_match_ignoring_case_and_spaces(linear: tuple[FakeLinear, str]) -> None:
    """Symphony compares states trimmed and lowercased. Before: the names went to Linear
    in an ``in`` filter, which compares exactly, so a WORKFLOW.md saying ``in progress``
    (or ``todo``) found no issue in Linear's "In Progress" (or "Todo") ever."""
    fake, _ = linear
    fake.add("ENG-1", "one", state="s1")
    fake.add("ENG-2", "two", state="s2")
    fake.add("ENG-3", "three", state="s4")
    found = await _tracker(linear).fetch_issues_by_states(["todo", " IN PROGRESS "])
    assert sorted((i.identifier, i.state) for i in found) == [
        ("ENG-1", "Todo"),
        ("ENG-2", "In Progress"),
    ]
    assert await _tracker(linear).fetch_issues_by_states(["  "]) == []


async def test_a_dispatcher_configured_in_lower_case_works_a_linear_issue(
    linear: tuple[FakeLinear, str], tmp_path: Path
) -> None:
    """End to end: `active_states: [in progress]` dispatches Linear's "In Progress"."""
    import tether
    from tether.agents import Dispatcher
    from tether.agents.backends import MockBackend

    fake, url = linear
    fake.add("ENG-7", "seven", state="s2")
    config = parse_workflow(
        f"""---
tracker: {{kind: linear, api_key: {fake.key}, endpoint: "{url}", project_slug: proj,
          active_states: [in progress], terminal_states: [done], handoff_state: human review}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
hi""",
        path=tmp_path / "WORKFLOW.md",
    )
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock()) as app:
        d = Dispatcher(app, config, backend=MockBackend([{}]))
        report = await d.run_once()
        assert report.errors == [] and report.dispatched == ["ENG-7"]
        assert fake.issues["uuid-ENG-7"]["state"] == "s3"  # handed off to Human Review


async def test_a_user_comment_quoting_a_marker_is_not_taken_for_tethers_own(
    linear: tuple[FakeLinear, str],
) -> None:
    fake, _ = linear
    fake.add("ENG-1", "one", state="s2")
    tag = "<!-- tether-run:r:c -->"
    fake.comments["uuid-ENG-1"] = [f"> handed off\n>\n> {tag}\n\nwhy?"]
    await _tracker(linear).comment("uuid-ENG-1", "handed off", marker="tether-run:r:c")
    assert fake.comments["uuid-ENG-1"][1:] == [f"handed off\n\n{tag}"]


@pytest.mark.parametrize("form", ["${LINEAR_API_KEY}", "$LINEAR_API_KEY", None])
async def test_a_key_read_with_its_newline_is_sent_without_it(
    linear: tuple[FakeLinear, str], monkeypatch: pytest.MonkeyPatch, form: str | None
) -> None:
    """A key exported as ``$(cat keyfile)``-style text, a newline at its end (and
    spaces), named in `api_key` or read from LINEAR_API_KEY alone. Before: sent as it
    stood in the Authorization header, and Linear answered 401 with no hint why."""
    fake, url = linear
    fake.add("ENG-1", "one")
    monkeypatch.setenv("LINEAR_API_KEY", f"  {fake.key}\n")
    key = f'api_key: "{form}", ' if form else ""
    wf = parse_workflow(
        f'---\ntracker: {{kind: linear, {key}endpoint: "{url}", project_slug: proj}}\n---\nhi'
    )
    found = await make_tracker(wf).fetch_issues_by_ids(["uuid-ENG-1"])
    assert [i.identifier for i in found] == ["ENG-1"]
    assert {r[2].get("Authorization") for r in fake.requests} == {fake.key}
    monkeypatch.setenv("LINEAR_API_KEY", " \n")  # blank once stripped: still refused as missing
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(f"---\ntracker: {{kind: linear, {key}project_slug: proj}}\n---\nhi")
    assert getattr(err.value, "code", None) in {"missing_tracker_secret", "missing_secret"}


async def test_a_key_no_header_can_carry_is_never_quoted_in_the_error(
    linear: tuple[FakeLinear, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a key with a line break inside it (a key file of two lines) failed
    every request with httpx's "Illegal header value b'<the key>'", the secret copied
    into the error, which is logged and recorded on the attempt. Now WORKFLOW.md
    naming such a key is refused at load, and a tracker given one never quotes it."""
    fake, url = linear
    monkeypatch.setenv("LINEAR_API_KEY", "lin-secret\nsecond-line")
    with pytest.raises(WorkflowFileError) as load:
        parse_workflow("---\ntracker: {kind: linear, api_key: $LINEAR_API_KEY, team: ENG}\n---\nhi")
    assert getattr(load.value, "code", None) == "invalid_config"
    assert "tracker.api_key" in str(load.value) and "lin-secret" not in str(load.value)
    with pytest.raises(TrackerError) as err:
        await LinearTracker(
            "lin-secret\nsecond-line", endpoint=url, team="ENG"
        ).fetch_issues_by_ids(["uuid-ENG-1"])
    assert err.value.code == "tracker_request" and "tracker.api_key" in str(err.value)
    assert "lin-secret" not in str(err.value) and "second-line" not in str(err.value)
    assert fake.requests == []  # refused before it was sent
