"""The queues page telling the truth about claimed jobs: one whose worker died (its
claim lapsed, nobody renews it) is run by nobody, and the page says so."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

import tether

from ._serve import start


async def _claimed_by_a_dead_worker(url: str) -> None:
    """A run queued on "slow" whose job a worker claimed, then died: its claim lapses."""
    app = tether.App(url)

    @app.workflow
    async def greet(wf: tether.Workflow, name: str) -> str:
        return "hi " + name

    try:
        await app.asubmit(greet, "Ada", queue="slow", workflow_id="queued-1")
        await app.asubmit(greet, "Bo", queue="slow", workflow_id="queued-2")
        (job,) = await app.store.claim_jobs(
            "w-dead", ["slow"], limit=1, visibility=0.05, limits={}, now=None,
            at=datetime.now(UTC),
        )  # fmt: skip
        assert job.worker == "w-dead"
        await asyncio.sleep(0.2)  # its lease ends, never renewed
    finally:
        await app.aclose()


def test_a_job_claimed_by_a_dead_worker_is_shown_lapsed(tmp_path: Path) -> None:
    # "claimed" is "the jobs workers are running": a job whose worker died stayed in it,
    # though nobody ran it, until a worker of its queue came to reap it
    url = f"sqlite:///{tmp_path}/t.db"
    asyncio.run(_claimed_by_a_dead_worker(url))
    served = start(tmp_path, url, flows=None)
    try:
        page = httpx.get(served.url + "/queues")
    finally:
        served.stop()
    assert page.status_code == 200
    row = re.search(r'<tr data-queue="slow">(.*?)</tr>', page.text, re.S)
    assert row is not None, page.text
    cells = {s: re.sub(r"<[^>]+>", "", c).strip() for s, c in
             re.findall(r'data-status="(\w+)">(.*?)</td>', row[1])}  # fmt: skip
    assert cells["queued"] == "1" and cells["claimed"] == "1 1 lapsed", cells
    assert "stopped renewing its claim" in row[1]
