"""The `github` tracker: GitHub Issues over the REST API (httpx).

States come from open/closed plus labels: a closed issue is ``closed``; an
open issue whose labels include one of the workflow's own state names (say
``in progress`` or ``review``, any state of the config other than open and
closed) is in that state, else it is ``open``. So ``active_states: [open]``
dispatches every open issue, and ``handoff_state: review`` labels it
``review`` (which takes it out of ``open``) when the agent is done; a move to
``closed`` closes the issue, a move to ``open`` reopens it and drops the state
labels.

- Candidates: ``GET /repos/{repo}/issues?state=open&labels=<required>``, 100 a
  page, following the ``Link: rel="next"`` header; pull requests (which the
  Issues API also lists) are left out.
- By ids (an id is the issue number): one ``GET`` each; 404/410 or a pull
  request means not visible; a malformed answer fails the whole call.
- Issue fields: identifier ``<repo name>#<number>``, title, body, labels,
  ``html_url``, the first assignee's login, created/updated times, and a
  priority from a ``p0``..``p4`` / ``priority: N`` label (lower is more urgent).
- Writes: `comment` lists the issue's comments first and does nothing if one
  already carries the marker (``<!-- tether-run:... -->``, invisible on
  GitHub), so a crash between the POST and the step's record never posts
  twice; `move` reads the issue first and does nothing if it is already there.
- The token (``api_key: $GITHUB_TOKEN``) is sent as a Bearer header and never
  logged; a 403/429 rate limit raises `TrackerError` (``tracker_rate_limited``)
  with the wait the headers give, which the dispatcher turns into a shared
  cooldown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from .._errors import TrackerError
from .._issue import Issue, normalise_labels, normalise_state
from ._http import request_json
from ._port import carries_marker, marked

__all__ = ["GitHubTracker"]

DEFAULT_ENDPOINT = "https://api.github.com"
_PRIORITY = re.compile(r"^(?:p|priority[:\s_-]*)([0-9])$")
_OPEN, _CLOSED = "open", "closed"


class GitHubTracker:
    """Issues of one repository (`repo` = ``owner/name``). `states`: every state the
    workflow names (active, terminal, hand-off): those other than open and closed
    are labels."""

    kind = "github"

    def __init__(
        self,
        repo: str,
        token: str,
        *,
        endpoint: str | None = None,
        required_labels: Iterable[str] = (),
        states: Iterable[str] = (),
    ) -> None:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise TrackerError(
                f"tracker.repo must be 'owner/name', got {repo!r}", code="invalid_tracker_config"
            )
        self.repo = repo
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.required_labels = normalise_labels(required_labels)
        self.state_labels = tuple(s for s in normalise_labels(states) if s not in (_OPEN, _CLOSED))
        self._token = token

    def __repr__(self) -> str:  # never the token
        return f"GitHubTracker({self.repo!r}, endpoint={self.endpoint!r})"

    @asynccontextmanager
    async def _client(self) -> Any:
        import httpx

        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "tether-agents",
        }
        async with httpx.AsyncClient(base_url=self.endpoint, headers=headers) as client:
            yield client

    # -- reading ------------------------------------------------------------------------

    def state_of(self, data: dict[str, Any]) -> str:
        """An issue's state: ``closed``, one of the state labels, or ``open``."""
        if data.get("state") == _CLOSED:
            return _CLOSED
        labels = set(normalise_labels(_label_names(data)))
        for state in self.state_labels:
            if state in labels:
                return state
        return _OPEN

    def normalise(self, data: Any) -> Issue:
        """An issue from the API's JSON (`TrackerError` if it lacks what an issue needs,
        or a field of it has another shape than GitHub's)."""
        number = data.get("number") if isinstance(data, dict) else None
        if not isinstance(number, int) or isinstance(number, bool):
            raise TrackerError(
                f"github: an issue without a number in the answer: {str(data)[:200]}",
                code="tracker_response",
            )
        if not _well_formed(data):
            raise TrackerError(
                f"github: a malformed issue in the answer: {str(data)[:200]}",
                code="tracker_response",
            )
        labels = normalise_labels(_label_names(data))
        assignee = data.get("assignee")
        return Issue(
            id=str(number),
            identifier=f"{self.repo.split('/')[1]}#{number}",
            title=data["title"],
            state=self.state_of(data),
            description=data.get("body") or None,
            priority=_priority(labels),
            labels=labels,
            dispatchable=not data.get("locked", False),
            url=data.get("html_url"),
            assignee_id=assignee.get("login") if assignee else None,
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            extra={"node_id": data.get("node_id"), "number": number},
        )

    async def _list(self, client: Any, gh_state: str) -> list[Issue]:
        first: dict[str, Any] = {"state": gh_state, "per_page": 100}
        if self.required_labels:
            first["labels"] = ",".join(self.required_labels)
        params: dict[str, Any] | None = first
        url: str | None = f"/repos/{self.repo}/issues"
        found: list[Issue] = []
        pages = 0
        while url is not None:
            body, response = await request_json(
                client, "GET", url, what=f"github: listing {gh_state} issues", params=params
            )
            if not isinstance(body, list):
                raise TrackerError(
                    f"github: listing {gh_state} issues of {self.repo}: not a list "
                    "(does the repository exist and can the token read it?)",
                    code="tracker_response",
                )
            found.extend(  # anything but an issue object (a pull request aside) fails the call
                self.normalise(item)
                for item in body
                if not (isinstance(item, dict) and "pull_request" in item)
            )
            url, params = response.links.get("next", {}).get("url"), None
            pages += 1
            if pages > 1000:
                raise TrackerError(
                    "github: more than 1000 pages of issues", code="tracker_pagination"
                )
        return found

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        if not states:
            return []
        wanted = {normalise_state(s) for s in states}
        gh_states = []
        if wanted - {_CLOSED}:
            gh_states.append(_OPEN)
        if _CLOSED in wanted:
            gh_states.append(_CLOSED)
        found: list[Issue] = []
        async with self._client() as client:
            for gh_state in gh_states:
                found.extend(await self._list(client, gh_state))
        return [i for i in found if normalise_state(i.state) in wanted]

    async def _get(self, client: Any, issue_id: str) -> dict[str, Any] | None:
        if not str(issue_id).isdigit():
            return None  # not an issue number: not visible here
        body, _ = await request_json(
            client, "GET", f"/repos/{self.repo}/issues/{issue_id}", what=f"github: issue {issue_id}"
        )
        if body is None or (isinstance(body, dict) and "pull_request" in body):
            return None
        if not isinstance(body, dict):
            raise TrackerError(f"github: issue {issue_id}: not an object", code="tracker_response")
        return body

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        if not ids:
            return []
        found: list[Issue] = []
        async with self._client() as client:
            for issue_id in dict.fromkeys(ids):
                body = await self._get(client, issue_id)
                if body is not None:
                    found.append(self.normalise(body))
        return found

    # -- writing ------------------------------------------------------------------------

    async def comment(self, issue_id: str, body: str, *, marker: str) -> None:
        async with self._client() as client:
            url: str | None = f"/repos/{self.repo}/issues/{issue_id}/comments"
            params: dict[str, Any] | None = {"per_page": 100}
            while url is not None:
                page, response = await request_json(
                    client, "GET", url, what=f"github: comments of {issue_id}", params=params
                )
                if page is None:
                    raise TrackerError(f"github: no issue {issue_id}", code="tracker_response")
                if not isinstance(page, list):  # an object's keys were read as comments
                    raise TrackerError(
                        f"github: comments of {issue_id}: not a list", code="tracker_response"
                    )
                if any(_ours(c, marker) for c in page):
                    return  # posted before a crash: not again
                url, params = response.links.get("next", {}).get("url"), None
            await request_json(
                client,
                "POST",
                f"/repos/{self.repo}/issues/{issue_id}/comments",
                what=f"github: commenting on {issue_id}",
                json={"body": marked(body, marker)},
            )

    async def move(self, issue_id: str, state: str, *, marker: str) -> None:
        target = normalise_state(state)
        async with self._client() as client:
            current = await self._get(client, issue_id)
            if current is None:
                raise TrackerError(f"github: no issue {issue_id}", code="tracker_response")
            if self.state_of(current) == target:
                return  # there already (perhaps moved before a crash)
            labels = [
                n for n in _label_names(current) if normalise_state(n) not in self.state_labels
            ]
            change: dict[str, Any] = {"state": _CLOSED if target == _CLOSED else _OPEN}
            if target not in (_OPEN, _CLOSED):
                labels.append(state.strip())
            if target != _CLOSED:
                change["labels"] = labels
            await request_json(
                client,
                "PATCH",
                f"/repos/{self.repo}/issues/{issue_id}",
                what=f"github: moving {issue_id} to {state}",
                json=change,
            )

    async def aclose(self) -> None:
        return None  # one client per call: nothing held between calls


_OPTIONAL_TEXT = ("body", "html_url", "created_at", "updated_at")


def _well_formed(data: dict[str, Any]) -> bool:
    """Fields in GitHub's shapes: before, ``labels: "bug"`` became the labels b, u and
    g, and a number for a title or a time went on into the issue (and its prompt)."""
    assignee = data.get("assignee")
    return (
        isinstance(data.get("title"), str)
        and all(isinstance(data.get(k), str | None) for k in _OPTIONAL_TEXT)
        and isinstance(data.get("labels"), list | None)
        and (
            assignee is None
            or (isinstance(assignee, dict) and isinstance(assignee.get("login"), str))
        )
    )


def _ours(comment: Any, marker: str) -> bool:
    return isinstance(comment, dict) and carries_marker(str(comment.get("body") or ""), marker)


def _label_names(data: dict[str, Any]) -> list[str]:
    names = []
    for label in data.get("labels") or ():
        name = label.get("name") if isinstance(label, dict) else label
        if isinstance(name, str):
            names.append(name)
    return names


def _priority(labels: tuple[str, ...]) -> int | None:
    for label in labels:
        m = _PRIORITY.match(label)
        if m is not None:
            return int(m.group(1))
    return None
