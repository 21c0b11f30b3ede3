"""The linear tracker on a busy issue and with a wrong key (a real local HTTP server
speaking Linear's GraphQL shapes)."""

from __future__ import annotations

import pytest

from tether.agents import TrackerError
from tether.agents.trackers import LinearTracker

from ._servers import FakeLinear
from .test_linear import _tracker, linear  # noqa: F401  (the fixture)


async def test_a_comment_past_the_first_page_is_not_posted_again(
    linear: tuple[FakeLinear, str],  # noqa: F811
) -> None:
    """An issue with 300 comments whose marker comment is the 260th: before, only the
    first 250 comments were read, so the retried comment step (its answer lost in a
    crash) posted it a second time; now every page is read and nothing is posted."""
    fake, _ = linear
    fake.add("ENG-1", "busy")
    marker = "tether-run:r1:comment"
    bodies = [f"chatter {n}" for n in range(300)]
    bodies[259] = f"done\n\n<!-- {marker} -->"
    fake.comments["uuid-ENG-1"] = list(bodies)
    await _tracker(linear).comment("uuid-ENG-1", "done", marker=marker)
    assert fake.comments["uuid-ENG-1"] == bodies
    await _tracker(linear).comment("uuid-ENG-1", "again", marker=f"{marker}#2")
    assert fake.comments["uuid-ENG-1"][-1] == f"again\n\n<!-- {marker}#2 -->"


async def test_a_refused_key_says_which_setting_to_fix(
    linear: tuple[FakeLinear, str],  # noqa: F811
) -> None:
    """Before: "linear: issues: Authentication required", naming no setting; now it
    points at ``tracker.api_key`` (the key never shown)."""
    _, url = linear
    wrong = LinearTracker("lin_api_wrong", team="ENG", endpoint=url)
    with pytest.raises(TrackerError) as err:
        await wrong.fetch_issues_by_states(["Todo"])
    assert "Authentication required" in str(err.value) and "tracker.api_key" in str(err.value)
    assert "lin_api_wrong" not in str(err.value) and not err.value.transient


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"errors": {"message": "Query too complex"}}, "Query too complex"),
        ({"errors": "boom"}, "issues: boom"),
        ({"errors": [{"extensions": {"code": "INTERNAL"}}]}, "'code': 'INTERNAL'"),
        ({"data": {"issues": {"nodes": [], "pageInfo": "none"}}}, "malformed pageInfo"),
    ],
)
async def test_a_malformed_answer_is_a_tracker_error(
    linear: tuple[FakeLinear, str],  # noqa: F811
    answer: dict[str, object],
    words: str,
) -> None:
    """Before: ``KeyError: 0`` (errors as one object, not a list) and ``AttributeError:
    'str' object has no attribute 'get'``: the tick said "fetching candidates: 0"; an
    error without a message said only "None"."""
    fake, _ = linear
    fake.answer = lambda *_: (200, {}, answer)  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await _tracker(linear).fetch_issues_by_states(["Todo"])
    assert err.value.code == "tracker_response" and words in str(err.value)


async def test_a_team_state_without_an_id_is_no_state_to_move_to(
    linear: tuple[FakeLinear, str],  # noqa: F811
) -> None:
    """Before: ``KeyError: 'id'`` from the hand-off; now the team has no such state."""
    fake, _ = linear
    fake.add("ENG-1", "one")
    original = fake.answer

    def idless(method: str, path: str, headers: dict[str, str], body: object) -> object:
        answer = original(method, path, headers, body)
        assert answer is not None
        issue = answer[2].get("data", {}).get("issue") or {}
        for node in issue.get("team", {}).get("states", {}).get("nodes", []):
            node.pop("id")
        return answer

    fake.answer = idless  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await _tracker(linear).move("uuid-ENG-1", "Done", marker="tether-run:r:handoff")
    assert err.value.code == "tracker_response" and "no state named 'Done'" in str(err.value)
    assert fake.issues["uuid-ENG-1"]["state"] == "s1"
