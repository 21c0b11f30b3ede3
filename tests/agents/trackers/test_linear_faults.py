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
