"""The github tracker's refusals as an operator meets them: GitHub's secondary rate
limit without a header, and a token that is wrong (a real local HTTP server)."""

from __future__ import annotations

import pytest

from tether.agents import TrackerError
from tether.agents.trackers import GitHubTracker

from ._servers import Answer, FakeGitHub


def _tracker(fake: FakeGitHub, token: str | None = None) -> GitHubTracker:
    return GitHubTracker("acme/api", token or fake.token, endpoint=fake.base, states=("open",))


async def test_a_secondary_rate_limit_without_headers_is_a_rate_limit(github: FakeGitHub) -> None:
    """GitHub's secondary limit may answer 403 "...rate limit..." with neither
    ``retry-after`` nor ``x-ratelimit-remaining: 0``. Before, that was a refusal
    (``tracker_status``, not transient): no cooldown, every tick asked again (which
    GitHub punishes), and a hand-off hitting it failed its run. Now it is a rate
    limit of a minute, as GitHub's docs ask."""
    github.add(1, "one")
    github.rate_limit_next = {"x-ratelimit-remaining": "4990"}
    with pytest.raises(TrackerError) as err:
        await _tracker(github).fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_rate_limited" and err.value.transient
    assert err.value.retry_after == 60
    github.rate_limit_next = {"x-ratelimit-remaining": "4990"}
    with pytest.raises(TrackerError) as err:
        await _tracker(github).move("1", "closed", marker="tether-run:r:s")
    assert err.value.code == "tracker_rate_limited"
    assert [i.id for i in await _tracker(github).fetch_issues_by_states(["open"])] == ["1"]


async def test_a_wrong_token_says_which_setting_to_fix(github: FakeGitHub) -> None:
    """Before: "github: listing open issues: HTTP 401 Bad credentials", naming no
    setting; now the error points at ``tracker.api_key`` (the token never shown)."""
    with pytest.raises(TrackerError) as err:
        await _tracker(github, token="ghp_wrong").fetch_issues_by_states(["open"])
    message = str(err.value)
    assert err.value.code == "tracker_status" and err.value.status == 401
    assert "Bad credentials" in message and "tracker.api_key" in message
    assert "ghp_wrong" not in message and not err.value.transient


@pytest.mark.parametrize(
    ("field", "value"),
    [("labels", "agent"), ("title", {"text": "one"}), ("created_at", 5), ("number", True)],
)
async def test_an_issue_field_of_another_shape_is_a_malformed_answer(
    github: FakeGitHub, field: str, value: object
) -> None:
    """Before: ``labels: "agent"`` became the labels a, g, e, n and t, a title or a time
    that is a number or an object went on into the issue and its prompt, and
    ``number: true`` was issue 1; now each is a malformed answer, as Linear's are."""
    github.add(1, "one", labels=("agent",))
    original = github.answer

    def odd(method: str, path: str, headers: dict[str, str], body: object) -> object:
        answer = original(method, path, headers, body)
        assert answer is not None
        status, extra, payload = answer
        if isinstance(payload, list):
            return status, extra, [{**item, field: value} for item in payload]
        return status, extra, {**payload, field: value}

    github.answer = odd  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await _tracker(github).fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_response" and "github:" in str(err.value)
    with pytest.raises(TrackerError):
        await _tracker(github).fetch_issues_by_ids(["1"])


@pytest.mark.parametrize("listing", [{"marker": "tether-run:r:c"}, "tether-run:r:c", 5])
async def test_a_comment_listing_that_is_not_a_list_is_a_malformed_answer(
    github: FakeGitHub, listing: object
) -> None:
    """Before: an object (or a string) for the issue's comments had its keys (its
    characters) scanned for the marker, and the comment was posted anyway, perhaps a
    second time; now it is a malformed answer and nothing is posted."""
    github.add(1, "one")
    original = github.answer

    def answer(method: str, path: str, headers: dict[str, str], body: object) -> Answer:
        if method == "GET" and "/comments" in path:
            return 200, {}, listing
        return original(method, path, headers, body)

    github.answer = answer  # type: ignore[method-assign]
    with pytest.raises(TrackerError) as err:
        await _tracker(github).comment("1", "done", marker="tether-run:r:c")
    assert err.value.code == "tracker_response" and "not a list" in str(err.value)
    assert github.comments.get(1, []) == [] and [r[0] for r in github.requests] == ["GET"]
