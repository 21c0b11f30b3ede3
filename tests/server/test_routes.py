"""``GET /api/v1/runs`` and the dashboard's lists of runs at a real `tether serve`, on
each database: they show what they showed, and read no input, output or state they do
not show; ``?fields=full`` gives the keys of `tether runs list --json` in the page."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tether import RunInfo
from tether.server import RunPage, RunSummary
from tether.store import Fence, NewEvent, NewRun, RunFilter, RunRow, RunStatus, Store, open_store

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


async def _fail(store: Store, workflow_id: str, at: datetime) -> None:
    """Claim the run and end it failed, with `ERROR`."""
    claimed = await store.claim_run(workflow_id, "o", T0, NewEvent("x"))
    await store.finish_run(Fence(workflow_id, claimed.generation), RunStatus.FAILED,
                           output=None, error=json.dumps(ERROR), at=at,
                           event=NewEvent("workflow.failed"))  # fmt: skip


def _serving(
    folder: Path, url: str, fill: Callable[[Store], Awaitable[list[RunRow]]]
) -> Iterator[tuple[Served, list[RunRow]]]:
    """`tether serve` of the database (no --app) once `fill` wrote its runs, and the
    rows `fill` gave."""

    async def filled() -> list[RunRow]:
        store = open_store(url)
        await store.open()
        try:
            return await fill(store)
        finally:
            await store.close()

    rows = asyncio.run(filled())
    served = start(folder, url, flows=None)
    yield served, rows
    served.stop()


async def _issues(store: Store) -> list[RunRow]:
    """Issue runs of the agent dispatcher with large inputs, one of them failed; the
    whole rows of every run, as `list_runs_page` reads them."""
    for n in range(LARGE):
        state = {"identifier": f"I-{n}", "title": f"Fix bug {n}", "phase": "running",
                 "workspace": f"/ws/I-{n}"}  # fmt: skip
        new = NewRun(f"issue-{n:02}", "agents.issue", input=json.dumps("x" * BIG),
                     state=json.dumps(state), tags=("agents", f"n{n}"))  # fmt: skip
        await store.create_run(new, T0 + timedelta(seconds=n))
    state = json.dumps({"identifier": "F-1", "phase": "running"})
    await store.create_run(NewRun("failed-1", "agents.issue", state=state), T0)
    await _fail(store, "failed-1", T0)
    return await store.list_runs_page(RunFilter(), limit=100)


@pytest.fixture
def issues(tmp_path: Path, database_url: str) -> Iterator[tuple[Served, list[RunRow]]]:
    yield from _serving(tmp_path, database_url, _issues)


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


async def _family(store: Store) -> list[RunRow]:
    """A parent run `p` and its children, each of a large input, one failed; the
    children's whole rows, oldest first."""
    await store.create_run(NewRun("p", "agents.batch"), T0)
    for n in range(LARGE):
        new = NewRun(f"kid-{n:02}", "agents.issue", input=json.dumps("x" * BIG),
                     parent_id="p", tags=("kid",))  # fmt: skip
        await store.create_run(new, T0 + timedelta(seconds=n))
    await _fail(store, "kid-03", T0 + timedelta(seconds=90))
    return [r for w in await store.child_runs("p") if (r := await store.get_run(w))]


@pytest.fixture
def family(tmp_path: Path, database_url: str) -> Iterator[tuple[Served, list[RunRow]]]:
    yield from _serving(tmp_path, database_url, _family)


def test_a_run_page_draws_its_children_as_it_did(family: tuple[Served, list[RunRow]]) -> None:
    served, kids = family
    page = httpx.get(f"{served.url}/runs/p", timeout=60).text
    drawn = re.findall(
        r'<li class="tl-row kind-child" data-kind="child" data-name="([^"]+)" '
        r'data-status="([^"]+)">\s*<span class="tl-label"><a href="([^"]+)">',
        page,
    )
    # in the timeline's order (by start), each child once, with its status and link
    assert sorted(drawn) == [(r.workflow_id, r.status.value, f"/runs/{r.workflow_id}")
                             for r in kids]  # fmt: skip
    assert drawn[0] == ("kid-00", "pending", "/runs/kid-00") and len(drawn) == LARGE
    assert ("kid-03", "failed", "/runs/kid-03") in drawn


def test_a_run_page_does_not_read_its_childrens_inputs(
    family: tuple[Served, list[RunRow]],
) -> None:
    """Each child was read whole to draw its bar: 12 children of 8 MB inputs, 96 MB
    read for ids, statuses and times."""
    served, _ = family
    whole = LARGE * BIG // 1024
    assert _peak_kib(served, "/runs/p") < whole // 4
