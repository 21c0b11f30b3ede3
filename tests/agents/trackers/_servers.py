"""Small real HTTP servers on 127.0.0.1 speaking GitHub's REST and Linear's GraphQL
shapes, each in a thread (the trackers talk to them over real sockets).

They hold their issues in dicts, record every request, and can be told to
rate-limit the next request or to act on a write and then drop the connection
before answering (a crash between the API call and the step's record).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from tether.agents import WorkflowFile, parse_workflow

from ..._loopback import loopback


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_: Any) -> None:
        return None

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with fake.lock:
            fake.requests.append((self.command, self.path, dict(self.headers), body))
            answer = fake.answer(self.command, self.path, dict(self.headers), body)
        if answer is None:  # acted on it, but the answer never arrives
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status, headers, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in {"content-type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


@contextmanager
def serving(fake: Any) -> Iterator[str]:
    """Serve `fake` on an ephemeral port; yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    with loopback(server) as url:
        yield url


Answer = tuple[int, dict[str, str], Any] | None


def served(fake: Any) -> Iterator[Any]:
    """`fake` on a free loopback port, its `base` set (the body of a fixture)."""
    with serving(fake) as base:
        fake.base = base
        yield fake


def github_workflow(fake: FakeGitHub, root: Path) -> WorkflowFile:
    """A WORKFLOW.md on the github tracker `fake`, a mock agent, workspaces in `root`."""
    return parse_workflow(
        f"""---
tracker: {{kind: github, repo: acme/api, endpoint: "{fake.base}", api_key: {fake.token}}}
workspace: {{root: {root / "ws"}}}
agent: {{backend: mock}}
---
hi""",
        path=root / "WORKFLOW.md",
    )


class FakeGitHub:
    """Issues (and pull requests) of one repository, GitHub's JSON shapes."""

    def __init__(self, repo: str = "acme/api", token: str = "gh-token") -> None:
        self.repo = repo
        self.token = token
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        self.rate_limit_next: dict[str, str] | None = None
        self.drop_next_write = False
        self.fail_writes: list[int] = []  # statuses the next writes get, not acting on them
        self.base = ""

    def add(
        self,
        number: int,
        title: str,
        *,
        labels: tuple[str, ...] = (),
        state: str = "open",
        pull: bool = False,
        **extra: Any,
    ) -> None:
        issue = {
            "id": 1000 + number,
            "node_id": f"I_{number}",
            "number": number,
            "title": title,
            "body": extra.pop("body", None),
            "state": state,
            "locked": False,
            "labels": [{"id": i, "name": n, "color": "ededed"} for i, n in enumerate(labels)],
            "assignee": extra.pop("assignee", None),
            "html_url": f"https://github.com/{self.repo}/issues/{number}",
            "created_at": f"2026-01-{number % 28 + 1:02d}T00:00:00Z",
            "updated_at": "2026-02-01T00:00:00Z",
            **extra,
        }
        if pull:
            issue["pull_request"] = {
                "url": f"https://api.github.com/repos/{self.repo}/pulls/{number}"
            }
        self.issues[number] = issue

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"message": "Bad credentials"}
        if self.rate_limit_next is not None:
            limit, self.rate_limit_next = self.rate_limit_next, None
            return 403, limit, {"message": "API rate limit exceeded"}
        if method != "GET" and self.fail_writes:
            return self.fail_writes.pop(0), {}, {"message": "Bad Gateway"}
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[:3] != ["repos", *self.repo.split("/")] or parts[3:4] != ["issues"]:
            return 404, {}, {"message": "Not Found"}
        rest = parts[4:]
        if not rest and method == "GET":
            return self._list(query)
        number = int(rest[0])
        if number not in self.issues:
            return 404, {}, {"message": "Not Found"}
        if len(rest) == 1 and method == "GET":
            return 200, {}, self.issues[number]
        if len(rest) == 1 and method == "PATCH":
            return self._patch(number, body)
        if rest[1:] == ["comments"] and method == "GET":
            return self._page(self.comments.get(number, []), query, url.path)
        if rest[1:] == ["comments"] and method == "POST":
            self.comments.setdefault(number, []).append(
                {"id": len(self.requests), "body": body["body"]}
            )
            return self._written(201, self.comments[number][-1])
        return 404, {}, {"message": "Not Found"}

    def _written(self, status: int, payload: Any) -> Answer:
        if self.drop_next_write:
            self.drop_next_write = False
            return None
        return status, {}, payload

    def _patch(self, number: int, body: dict[str, Any]) -> Answer:
        issue = self.issues[number]
        if "state" in body:
            issue["state"] = body["state"]
        if "labels" in body:
            issue["labels"] = [{"id": i, "name": n} for i, n in enumerate(body["labels"])]
        return self._written(200, issue)

    def _list(self, query: dict[str, str]) -> Answer:
        wanted = {x.strip().lower() for x in query.get("labels", "").split(",") if x.strip()}
        state = query.get("state", "open")
        items = [
            i
            for _, i in sorted(self.issues.items())
            if (state == "all" or i["state"] == state)
            and wanted <= {lab["name"].lower() for lab in i["labels"]}
        ]
        return self._page(items, query, f"/repos/{self.repo}/issues")

    def _page(self, items: list[Any], query: dict[str, str], path: str) -> Answer:
        per_page = int(query.get("per_page", 30))
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {"x-ratelimit-remaining": "4999"}
        if page * per_page < len(items):
            rest = {k: v for k, v in query.items() if k != "page"}
            q = "&".join(f"{k}={v}" for k, v in {**rest, "page": page + 1}.items())
            headers["link"] = (
                f'<{self.base}{path}?{q}>; rel="next", <{self.base}{path}?page=99>; rel="last"'
            )
        return 200, headers, chunk


def reset_in(seconds: float) -> dict[str, str]:
    """GitHub's primary rate-limit headers: none left until `seconds` from now."""
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(time.time() + seconds)),
    }


def _state_matches(name: str, f: dict[str, Any]) -> bool:
    """Linear's WorkflowStateFilter, the parts the tracker uses: ``or``, and a name's
    ``in`` (case-sensitive, as Linear's is), ``eq`` and ``eqIgnoreCase``."""
    if "or" in f:
        return any(_state_matches(name, g) for g in f["or"])
    by = f["name"]
    if "in" in by:
        return name in by["in"]
    if "eqIgnoreCase" in by:
        return name.lower() == str(by["eqIgnoreCase"]).lower()
    return bool(name == by["eq"])


class FakeLinear:
    """A Linear workspace: issues with teams, projects and workflow states; answers the
    GraphQL operations the tracker sends (by operation name) in Linear's shapes."""

    STATES: ClassVar[dict[str, tuple[str, str]]] = {
        "s1": ("Todo", "unstarted"),
        "s2": ("In Progress", "started"),
        "s3": ("Human Review", "started"),
        "s4": ("Done", "completed"),
    }

    def __init__(self, key: str = "lin_api_key") -> None:
        self.key = key
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        self.rate_limit_next = False
        self.drop_next_write = False

    def add(
        self,
        ident: str,
        title: str,
        *,
        state: str = "s1",
        project: str = "proj",
        team: str = "ENG",
        priority: int = 0,
        labels: tuple[str, ...] = (),
        blocked_by: tuple[str, ...] = (),
    ) -> None:
        self.issues[f"uuid-{ident}"] = {
            "identifier": ident,
            "title": title,
            "state": state,
            "project": project,
            "team": team,
            "priority": priority,
            "labels": labels,
            "blocked_by": blocked_by,
        }

    def node(self, issue_id: str) -> dict[str, Any]:
        i = self.issues[issue_id]
        name, kind = self.STATES[i["state"]]
        blockers = [
            {
                "type": "blocks",
                "issue": {
                    "id": b,
                    "identifier": self.issues[b]["identifier"],
                    "state": {"name": self.STATES[self.issues[b]["state"]][0]},
                },
            }
            for b in i["blocked_by"]
        ]
        return {
            "id": issue_id,
            "identifier": i["identifier"],
            "title": i["title"],
            "description": None,
            "priority": i["priority"],
            "url": f"https://linear.app/acme/issue/{i['identifier']}",
            "branchName": f"eng/{i['identifier'].lower()}",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-02T00:00:00.000Z",
            "state": {"name": name, "type": kind},
            "assignee": None,
            "labels": {"nodes": [{"name": n} for n in i["labels"]]},
            "inverseRelations": {"nodes": blockers},
        }

    def _matches(self, issue_id: str, f: dict[str, Any]) -> bool:
        i = self.issues[issue_id]
        if "id" in f and issue_id not in f["id"]["in"]:
            return False
        if "project" in f and i["project"] != f["project"]["slugId"]["eq"]:
            return False
        if "team" in f and i["team"] != f["team"]["key"]["eq"]:
            return False
        return "state" not in f or _state_matches(self.STATES[i["state"]][0], f["state"])

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if headers.get("Authorization") != self.key:
            return (
                400,
                {},
                {
                    "errors": [
                        {
                            "message": "Authentication required",
                            "extensions": {"code": "AUTHENTICATION_ERROR"},
                        }
                    ]
                },
            )
        if self.rate_limit_next:
            self.rate_limit_next = False
            return (
                400,
                {"x-ratelimit-requests-remaining": "0"},
                {
                    "errors": [
                        {"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}}
                    ]
                },
            )
        query, v = body["query"], body["variables"]
        if "query TetherIssues" in query:
            return self._issues(v)
        if "query TetherIssue(" in query:
            return self._issue(v["id"])
        if "query TetherComments(" in query:
            comments = self._comments(v["id"], v["after"])
            return 200, {}, {"data": {"issue": {"comments": comments}}}
        if "mutation TetherComment" in query:
            self.comments.setdefault(v["issueId"], []).append(v["body"])
            return self._written({"commentCreate": {"success": True}})
        if "mutation TetherMove" in query:
            self.issues[v["id"]]["state"] = v["stateId"]
            return self._written({"issueUpdate": {"success": True}})
        return 400, {}, {"errors": [{"message": "unknown operation"}]}

    def _comments(self, issue_id: str, after: str | None) -> dict[str, Any]:
        """A page of an issue's comments, 250 a page as the tracker asks, oldest first."""
        bodies = self.comments.get(issue_id, [])
        start = int(after or 0)
        more = start + 250 < len(bodies)
        return {
            "nodes": [{"body": b} for b in bodies[start : start + 250]],
            "pageInfo": {"hasNextPage": more, "endCursor": str(start + 250) if more else None},
        }

    def _written(self, data: dict[str, Any]) -> Answer:
        if self.drop_next_write:
            self.drop_next_write = False
            return None
        return 200, {}, {"data": data}

    def _issues(self, v: dict[str, Any]) -> Answer:
        ids = [k for k in sorted(self.issues) if self._matches(k, v["filter"])]
        start = int(v["after"] or 0)
        chunk = ids[start : start + v["first"]]
        more = start + v["first"] < len(ids)
        return (
            200,
            {},
            {
                "data": {
                    "issues": {
                        "nodes": [self.node(k) for k in chunk],
                        "pageInfo": {
                            "hasNextPage": more,
                            "endCursor": str(start + v["first"]) if more else None,
                        },
                    }
                }
            },
        )

    def _issue(self, issue_id: str) -> Answer:
        if issue_id not in self.issues:
            return 200, {}, {"data": {"issue": None}, "errors": [{"message": "Entity not found"}]}
        name = self.STATES[self.issues[issue_id]["state"]][0]
        return (
            200,
            {},
            {
                "data": {
                    "issue": {
                        "id": issue_id,
                        "state": {"id": self.issues[issue_id]["state"], "name": name},
                        "team": {
                            "states": {
                                "nodes": [{"id": k, "name": n} for k, (n, _) in self.STATES.items()]
                            }
                        },
                        "comments": self._comments(issue_id, None),
                    }
                }
            },
        )
