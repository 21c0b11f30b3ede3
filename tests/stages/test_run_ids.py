"""A pipeline's files under any run id tether accepts (`run_prefix`)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import tether
from tether import App, FakeClock, RunStatus
from tether.blobs import MemoryBlobStore
from tether.stages._context import run_prefix

from .test_execute import Doc, Summary, big, reader

# ids tether accepts whose percent-encoding is no blob key segment: each broke the
# pipeline after its first stage ran, and `delete_run` or `prune` after the delete
ODD_IDS = [".", "..", "a~b", "x" * 250, "日本語" * 10]


def test_an_id_that_encodes_to_a_segment_keeps_its_readable_folder() -> None:
    assert run_prefix("doc-1") == "runs/doc-1/"
    assert run_prefix("b/1") == "runs/b%2F1/"
    odd = {run_prefix(w) for w in ODD_IDS}
    assert len(odd) == len(ODD_IDS) and all(p.startswith("runs/#") for p in odd)


@pytest.mark.parametrize("wid", ODD_IDS, ids=["dot", "dotdot", "tilde", "long", "cjk"])
async def test_a_pipeline_under_an_odd_id_runs_and_its_files_go_with_it(
    database_url: str, wid: str
) -> None:
    app = App(database_url, clock=FakeClock())
    p = tether.Pipeline("odd", input=Doc, inline_limit=1000).pipe(big).pipe(reader)
    app.register(p)
    try:
        done = await app.arun(p, Doc(url="u"), workflow_id=wid)
        assert done.status is RunStatus.COMPLETED
        assert done.value == Summary(summary="some notes5000")
        assert len(await app.blobs.list(run_prefix(wid))) == 3
        await app.adelete_run(wid)
        assert await app.blobs.list(run_prefix(wid)) == []
    finally:
        await app.aclose()


async def test_prune_removes_every_pruned_runs_files(database_url: str) -> None:
    clock = FakeClock()
    app = App(database_url, clock=clock)
    p = tether.Pipeline("odd", input=Doc, inline_limit=1000).pipe(big).pipe(reader)
    app.register(p)
    try:
        for wid in (".", "plain-1", "plain-2"):
            await app.arun(p, Doc(url="u"), workflow_id=wid)
        clock.advance(7200)
        assert await app.aprune(older_than=timedelta(hours=1)) == 3
        assert await app.blobs.list("runs/") == []
    finally:
        await app.aclose()


class _Stuck(MemoryBlobStore):
    """Memory blobs whose files of one run cannot be removed (a file system error)."""

    async def delete_prefix(self, prefix: str) -> int:
        if prefix == run_prefix("stuck"):
            raise PermissionError("read-only folder")
        return await super().delete_prefix(prefix)


async def test_one_runs_files_failing_to_go_leaves_a_warning_not_the_others(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    app = App(database_url, clock=clock, blobs=_Stuck())
    p = tether.Pipeline("odd", input=Doc, inline_limit=1000).pipe(big).pipe(reader)
    app.register(p)
    try:
        for wid in ("stuck", "plain-1"):
            await app.arun(p, Doc(url="u"), workflow_id=wid)
        clock.advance(7200)
        with caplog.at_level(logging.WARNING, logger="tether"):
            assert await app.aprune(older_than=timedelta(hours=1)) == 2
        assert await app.blobs.list("runs/") == [f"{run_prefix('stuck')}{k}" for k in (
            "stages/big/1/files/data.json", "stages/big/1/files/notes.txt",
            "stages/big/1/output.json")]  # fmt: skip
        assert "files of deleted run stuck were not removed" in caplog.text
    finally:
        await app.aclose()
