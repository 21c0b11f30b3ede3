"""``GET /api/v1/runs`` and the dashboard's lists of runs at a real `tether serve`, on
each database: they show what they showed, and read no input, output or state they do
not show; ``?fields=full`` gives the keys of `tether runs list --json` in the page."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tether import RunInfo
from tether.server import RunPage, RunSummary
from tether.store import Fence, NewEvent, NewRun, RunFilter, RunRow, RunStatus, open_store

from ._serve import Served, start

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BIG = 8_000_000  # characters of each large input
LARGE = 12  # runs with a large input
ERROR = {"type": "RuntimeError", "module": "builtins", "qualname": "RuntimeError",
         "message": "the agent gave up", "retryable": True, "traceback": "Traceback ...",
         "cause": None, "attributes": None}  # fmt: skip
# what a run of a page showed before ?fields=full: these keys, no more
SUMMARY_KEYS = {
    "workflow_id", "workflow_name", "workflow_version", "status", "tags", "tenant",
    "parent_id", "queue", "priority", "idempotency_key", "created_at", "updated_at",
    "started_at", "finished_at", "end_reason", "error",
}  # fmt: skip


async def _issues(url: str) -> list[RunRow]:
    """Issue runs of the agent dispatcher with large inputs, one of them failed; the
    whole rows of every run, as `list_runs_page` reads them."""
    store = open_store(url)
    await store.open()
    try:
        for n in range(LARGE):
            state = {"identifier": f"I-{n}", "title": f"Fix bug {n}", "phase": "running",
                     "workspace": f"/ws/I-{n}"}  # fmt: skip
            new = NewRun(f"issue-{n:02}", "agents.issue", input=json.dumps("x" * BIG),
                         state=json.dumps(state), tags=("agents", f"n{n}"))  # fmt: skip
            await store.create_run(new, T0 + timedelta(seconds=n))
        state = json.dumps({"identifier": "F-1", "phase": "running"})
        await store.create_run(NewRun("failed-1", "agents.issue", state=state), T0)
        fence = Fence(
            "failed-1", (await store.claim_run("failed-1", "o", T0, NewEvent("x"))).generation
        )
        await store.finish_run(fence, RunStatus.FAILED, output=None, error=json.dumps(ERROR),
                               at=T0, event=NewEvent("workflow.failed"))  # fmt: skip
        return await store.list_runs_page(RunFilter(), limit=100)
    finally:
        await store.close()


@pytest.fixture
def issues(tmp_path: Path, database_url: str) -> Iterator[tuple[Served, list[RunRow]]]:
    rows = asyncio.run(_issues(database_url))
    served = start(tmp_path, database_url, flows=None)
    yield served, rows
    served.stop()


def test_a_page_of_runs_shows_what_it_showed(issues: tuple[Served, list[RunRow]]) -> None:
    served, rows = issues
    got = httpx.get(f"{served.url}/api/v1/runs", params={"limit": 5}, timeout=60)
    assert got.status_code == 200, got.text
    page = got.json()
    expected = [
        RunSummary.of(RunInfo.from_row(r)).model_dump(mode="json", exclude_unset=True)
        for r in rows[:5]
    ]
    assert page["runs"] == expected
    assert all(set(run) == SUMMARY_KEYS for run in page["runs"])
    failed = httpx.get(f"{served.url}/api/v1/runs", params={"status": "failed"}).json()
    assert failed["runs"][0]["error"] == ERROR  # the whole error, as before
    rest = httpx.get(
        f"{served.url}/api/v1/runs", params={"limit": 50, "cursor": page["next_cursor"]}
    )
    assert [r["workflow_id"] for r in rest.json()["runs"]] == [r.workflow_id for r in rows[5:]]


def test_a_full_page_has_what_each_runs_record_has(issues: tuple[Served, list[RunRow]]) -> None:
    served, _ = issues
    api = f"{served.url}/api/v1/runs"
    full = httpx.get(api, params={"limit": 2, "fields": "full"}, timeout=60).json()
    summary = httpx.get(api, params={"limit": 2}).json()
    assert full["next_cursor"] == summary["next_cursor"]
    for run, brief in zip(full["runs"], summary["runs"], strict=True):
        rec = httpx.get(f"{api}/{run['workflow_id']}", timeout=60).json()
        assert run == brief | {
            "input": rec["input"],
            "output": rec["output"],
            "state": rec["state"],
            "owner": rec["owner"],
            "owner_expires_at": rec["ownerExpiresAt"],
        }
    assert full["runs"][0]["input"] == "x" * BIG
    page = RunPage.model_validate(full)  # the typed clients read it
    assert page.runs[1].state == {"identifier": "I-10", "title": "Fix bug 10",
                                  "phase": "running", "workspace": "/ws/I-10"}  # fmt: skip


def test_fields_is_summary_or_full(served: Served) -> None:
    got = httpx.get(f"{served.url}/api/v1/runs", params={"fields": "payloads"})
    assert got.status_code == 422, got.text
    assert "query.fields: Input should be 'summary' or 'full'" in got.text, got.text
    spec = httpx.get(f"{served.url}/api/v1/openapi.json").json()
    (param,) = [p for p in spec["paths"]["/api/v1/runs"]["get"]["parameters"]
                if p["name"] == "fields"]  # fmt: skip
    assert "full" in param["description"] and "input" in param["description"]


def test_the_dashboards_lists_show_what_they_showed(issues: tuple[Served, list[RunRow]]) -> None:
    served, rows = issues
    runs = httpx.get(f"{served.url}/runs", timeout=60).text
    assert re.findall(r'<tr data-run-id="([^"]+)"', runs) == [r.workflow_id for r in rows]
    assert '<span class="tag" title="n3">n3</span>' in runs
    assert '<span class="badge st-failed">failed</span>' in runs
    agents = httpx.get(f"{served.url}/agents?all=1", timeout=60).text
    assert re.findall(r'<tr data-issue="([^"]+)"', agents) == [
        json.loads(r.state or "{}")["identifier"] for r in rows
    ]
    assert "Fix bug 3" in agents and "<code>/ws/I-3</code>" in agents  # from each state
    assert "the agent gave up" in agents  # the failed one's error


def _peak_kib(served: Served, path: str, **params: object) -> int:
    """How much more memory (KiB) the server held at its peak while it answered `path`
    than before it: its peak is reset first (Linux: /proc/PID/clear_refs)."""
    status = Path(f"/proc/{served.proc.pid}/status")

    def field(name: str) -> int:
        (line,) = [ln for ln in status.read_text().splitlines() if ln.startswith(name)]
        return int(line.split()[1])

    Path(f"/proc/{served.proc.pid}/clear_refs").write_text("5")
    before = field("VmRSS:")
    got = httpx.get(served.url + path, params=params, timeout=120)  # type: ignore[arg-type]
    assert got.status_code == 200, got.text
    return field("VmHWM:") - before


LISTS = ("/api/v1/runs", "/runs", "/agents", "/agents?all=1")


def test_lists_of_runs_with_large_inputs_do_not_read_them(
    issues: tuple[Served, list[RunRow]],
) -> None:
    """A page of the API, the dashboard's runs and its agents read every run's input:
    50 runs of 1 MB inputs, 50 MB read to show ids and statuses."""
    served, _ = issues
    whole = LARGE * BIG // 1024
    peaks = {path: _peak_kib(served, path) for path in LISTS}
    assert all(kib < whole // 4 for kib in peaks.values()), (peaks, whole)
    # the measure sees a read: a page with the inputs (?fields=full) reads them all
    assert _peak_kib(served, "/api/v1/runs", fields="full") > whole
