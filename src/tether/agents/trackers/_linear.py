"""The `linear` tracker: Linear's GraphQL API (httpx).

- Candidates: ``issues(filter: {project: {slugId}, team: {key}, state: {or:
  [{name: {eqIgnoreCase: <state>}}, ...]}})`` 50 a page, following
  ``pageInfo.endCursor`` while ``hasNextPage``; the issue state's name is kept as
  Linear spells it and its type (``unstarted``, ``started``, ``completed``,
  ``canceled``...) in `extra`. State names match as Symphony compares them,
  trimmed and ignoring case ("in progress" is Linear's "In Progress"): Linear's
  own ``in`` compares exactly.
- By ids: the same query filtered on ``id: {in: ids}`` (ids not returned are not
  visible; a malformed node fails the call).
- Fields: identifier (``ENG-12``), title, description, priority (Linear's 1
  urgent .. 4 low; 0 "no priority" is None), labels, state, url, branch name,
  assignee, times, and blockers from the inverse ``blocks`` relations.
  With `assignee` set, only issues assigned to that user id are dispatchable.
- Writes: `comment` reads the issue's comments (every page, 250 a page) and does
  nothing if one carries the marker, else ``commentCreate``; `move` reads the issue's state and its
  team's workflow states, does nothing if already there, else ``issueUpdate``
  with the state of that name.
- The key goes in the ``Authorization`` header as Linear expects; a 429 or a
  ``RATELIMITED`` GraphQL error raises `TrackerError` (``tracker_rate_limited``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

from .._errors import TrackerError
from .._issue import Issue, normalise_state
from ._http import rate_limit_wait, request_json
from ._port import carries_marker, marked

__all__ = ["LinearTracker"]

DEFAULT_ENDPOINT = "https://api.linear.app/graphql"
PAGE = 50

_FIELDS = """
  id identifier title description priority url branchName createdAt updatedAt
  state { name type }
  assignee { id }
  labels { nodes { name } }
  inverseRelations { nodes { type issue { id identifier state { name } } } }
"""
ISSUES_QUERY = f"""
query TetherIssues($filter: IssueFilter, $first: Int!, $after: String) {{
  issues(filter: $filter, first: $first, after: $after) {{
    nodes {{ {_FIELDS} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""
ISSUE_QUERY = """
query TetherIssue($id: String!) {
  issue(id: $id) {
    id
    state { id name }
    team { states { nodes { id name } } }
    comments(first: 250) { nodes { body } pageInfo { hasNextPage endCursor } }
  }
}"""
COMMENTS_QUERY = """
query TetherComments($id: String!, $after: String) {
  issue(id: $id) {
    comments(first: 250, after: $after) { nodes { body } pageInfo { hasNextPage endCursor } }
  }
}"""
COMMENT_MUTATION = """
mutation TetherComment($issueId: String!, $body: String!) {
  commentCreate(input: {issueId: $issueId, body: $body}) { success }
}"""
MOVE_MUTATION = """
mutation TetherMove($id: String!, $stateId: String!) {
  issueUpdate(id: $id, input: {stateId: $stateId}) { success }
}"""


class LinearTracker:
    """Issues of a Linear project (`project_slug`) and/or team (`team`, its key)."""

    kind = "linear"

    def __init__(
        self,
        api_key: str,
        *,
        project_slug: str | None = None,
        team: str | None = None,
        endpoint: str | None = None,
        assignee: str | None = None,
    ) -> None:
        if not project_slug and not team:
            raise TrackerError(
                "the linear tracker needs tracker.project_slug or tracker.team",
                code="invalid_tracker_config",
            )
        self.project_slug = project_slug
        self.team = team
        self.endpoint = endpoint or DEFAULT_ENDPOINT
        self.assignee = assignee
        self._key = api_key

    def __repr__(self) -> str:  # never the key
        return f"LinearTracker(project_slug={self.project_slug!r}, team={self.team!r})"

    @asynccontextmanager
    async def _client(self) -> Any:
        import httpx

        headers = {"Authorization": self._key, "Content-Type": "application/json"}
        async with httpx.AsyncClient(headers=headers) as client:
            yield client

    async def _query(self, client: Any, query: str, variables: dict[str, Any], what: str) -> Any:
        body, response = await request_json(
            client,
            "POST",
            self.endpoint,
            what=f"linear: {what}",
            graphql=True,
            json={"query": query, "variables": variables},
        )
        if not isinstance(body, dict):
            raise TrackerError(f"linear: {what}: no answer", code="tracker_response")
        errors = body.get("errors")
        if errors and not isinstance(errors, list):  # GraphQL's is a list: was a KeyError
            errors = [errors]
        if errors:
            codes = {
                str((e.get("extensions") or {}).get("code", "")).upper()
                for e in errors
                if isinstance(e, dict)
            }
            first = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
            if not isinstance(first, str):  # an error without a message: was "None"
                first = str(errors[0])[:200]
            if "RATELIMITED" in codes:
                raise TrackerError(
                    f"linear: {what}: rate limited ({first})",
                    code="tracker_rate_limited",
                    retry_after=rate_limit_wait(429, response.headers),
                )
            hint = ""
            if codes & {"AUTHENTICATION_ERROR", "FORBIDDEN"}:
                hint = " (the key was refused: is tracker.api_key a current Linear API key?)"
            raise TrackerError(f"linear: {what}: {first}{hint}", code="tracker_response")
        data = body.get("data")
        if not isinstance(data, dict):
            raise TrackerError(f"linear: {what}: no data in the answer", code="tracker_response")
        return data

    # -- reading ------------------------------------------------------------------------

    def normalise(self, node: Any) -> Issue:
        """An issue from a GraphQL node (`TrackerError` if it lacks what an issue needs,
        or a field of it has another shape than Linear's)."""
        try:
            return self._normalise(node)
        except (AttributeError, TypeError, ValueError):
            raise TrackerError(
                f"linear: a malformed issue in the answer: {str(node)[:200]}",
                code="tracker_response",
            ) from None

    def _normalise(self, node: Any) -> Issue:
        state = node.get("state") if isinstance(node, dict) else None
        if not (
            isinstance(node, dict)
            and node.get("id")
            and node.get("identifier")
            and isinstance(node.get("title"), str)
            and isinstance(state, dict)
            and state.get("name")
        ):
            raise TrackerError(
                f"linear: a malformed issue in the answer: {str(node)[:200]}",
                code="tracker_response",
            )
        assignee = (node.get("assignee") or {}).get("id")
        labels = (node.get("labels") or {}).get("nodes") or ()
        # id, identifier, title and url are Linear's names too; Issue's parser coerces
        return Issue.from_dict(
            {
                **node,
                "state": state["name"],
                "description": node.get("description") or None,
                "priority": _priority(node.get("priority")),
                "labels": [n.get("name") for n in labels],
                "blocked_by": _blockers(node),
                "dispatchable": self.assignee is None or assignee == self.assignee,
                "branch_name": node.get("branchName"),
                "assignee_id": assignee,
                "created_at": node.get("createdAt"),
                "updated_at": node.get("updatedAt"),
                "extra": {"state_type": state.get("type")},
            }
        )

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {}
        if self.project_slug:
            scope["project"] = {"slugId": {"eq": self.project_slug}}
        if self.team:
            scope["team"] = {"key": {"eq": self.team}}
        return scope

    async def _issues(self, issue_filter: dict[str, Any], what: str) -> list[Issue]:
        found: list[Issue] = []
        after: str | None = None
        async with self._client() as client:
            for _page in range(1000):
                variables = {"filter": issue_filter, "first": PAGE, "after": after}
                data = await self._query(client, ISSUES_QUERY, variables, what)
                issues = data.get("issues")
                if not isinstance(issues, dict) or not isinstance(issues.get("nodes"), list):
                    raise TrackerError(
                        f"linear: {what}: no issues in the answer", code="tracker_response"
                    )
                found.extend(self.normalise(n) for n in issues["nodes"])
                page = issues.get("pageInfo") or {}
                if not isinstance(page, dict):  # was an AttributeError naming nothing
                    raise TrackerError(
                        f"linear: {what}: a malformed pageInfo in the answer: {str(page)[:200]}",
                        code="tracker_response",
                    )
                if not page.get("hasNextPage"):
                    return found
                after = page.get("endCursor")
                if not after:
                    raise TrackerError(
                        f"linear: {what}: hasNextPage without an endCursor",
                        code="tracker_pagination",
                    )
        raise TrackerError(f"linear: {what}: more than 1000 pages", code="tracker_pagination")

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        if not states:
            return []
        # Linear's `in` is case-sensitive, and configs spell states as they like ("in
        # progress"): ask for each name ignoring case, and compare as Symphony does
        names = list(dict.fromkeys(s.strip() for s in states if s.strip()))
        if not names:
            return []
        by_name = {"or": [{"name": {"eqIgnoreCase": n}} for n in names]}
        found = await self._issues({**self._scope(), "state": by_name}, "issues")
        wanted = {normalise_state(s) for s in states}
        return [i for i in found if normalise_state(i.state) in wanted]

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        if not ids:
            return []
        wanted = list(dict.fromkeys(ids))
        return await self._issues({"id": {"in": wanted}}, "issues by id")

    # -- writing ------------------------------------------------------------------------

    async def _issue(self, client: Any, issue_id: str) -> dict[str, Any]:
        data = await self._query(client, ISSUE_QUERY, {"id": issue_id}, f"issue {issue_id}")
        issue = data.get("issue")
        if not isinstance(issue, dict):
            raise TrackerError(f"linear: no issue {issue_id}", code="tracker_response")
        return issue

    async def comment(self, issue_id: str, body: str, *, marker: str) -> None:
        async with self._client() as client:
            issue = await self._issue(client, issue_id)
            if await self._has_comment(client, issue_id, issue.get("comments"), marker):
                return  # posted before a crash: not again
            data = await self._query(
                client,
                COMMENT_MUTATION,
                {"issueId": issue_id, "body": marked(body, marker)},
                f"commenting on {issue_id}",
            )
            _succeeded(data, "commentCreate", issue_id)

    async def _has_comment(self, client: Any, issue_id: str, page: Any, marker: str) -> bool:
        """Whether a comment of the issue is tether's own with `marker`, on any page of its comments
        (not only the first 250: a busy issue's marker may be further on)."""
        for _ in range(1000):
            page = page if isinstance(page, dict) else {}
            nodes = page.get("nodes") or ()
            bodies = (str(c.get("body") or "") for c in nodes if isinstance(c, dict))
            if any(carries_marker(b, marker) for b in bodies):
                return True
            info = page.get("pageInfo") or {}
            if not (info.get("hasNextPage") and info.get("endCursor")):
                return False
            variables = {"id": issue_id, "after": info["endCursor"]}
            data = await self._query(client, COMMENTS_QUERY, variables, f"comments of {issue_id}")
            page = (data.get("issue") or {}).get("comments")
        raise TrackerError(
            f"linear: comments of {issue_id}: more than 1000 pages", code="tracker_pagination"
        )

    async def move(self, issue_id: str, state: str, *, marker: str) -> None:
        async with self._client() as client:
            issue = await self._issue(client, issue_id)
            if normalise_state((issue.get("state") or {}).get("name")) == normalise_state(state):
                return  # there already (perhaps moved before a crash)
            nodes = ((issue.get("team") or {}).get("states") or {}).get("nodes") or ()
            ids = [  # a state without an id was a KeyError naming nothing: none of that name
                n["id"]
                for n in nodes
                if isinstance(n, dict)
                and isinstance(n.get("id"), str)
                and normalise_state(n.get("name")) == normalise_state(state)
            ]
            if not ids:
                raise TrackerError(
                    f"linear: the team of {issue_id} has no state named {state!r}",
                    code="tracker_response",
                )
            data = await self._query(
                client, MOVE_MUTATION, {"id": issue_id, "stateId": ids[0]}, f"moving {issue_id}"
            )
            _succeeded(data, "issueUpdate", issue_id)

    async def aclose(self) -> None:
        return None  # one client per call: nothing held between calls


def _succeeded(data: dict[str, Any], field: str, issue_id: str) -> None:
    if not (data.get(field) or {}).get("success"):
        raise TrackerError(
            f"linear: {field} on {issue_id} did not succeed", code="tracker_response"
        )


def _priority(value: Any) -> int | None:
    """Linear's 1 (urgent) .. 4 (low); its 0, "no priority", is None."""
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _blockers(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues that block `node`, as `Issue.from_dict` reads a blocker."""
    found = []
    for rel in (node.get("inverseRelations") or {}).get("nodes") or ():
        other = rel.get("issue") if isinstance(rel, dict) else None
        if rel.get("type") == "blocks" and isinstance(other, dict):
            state = (other.get("state") or {}).get("name")
            found.append(
                {"id": other.get("id"), "identifier": other.get("identifier"), "state": state}
            )
    return found
