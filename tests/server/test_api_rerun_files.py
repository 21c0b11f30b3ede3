"""``POST /api/v1/runs/{id}/rerun`` forgets the files of the stages it forgets, as
`App.rerun_from` does: the HTTP route sent the rerun alone and left every forgotten
stage's files of the attempt before behind, for good."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from ._serve import start

FLOWS = textwrap.dedent(
    """
    import os

    from pydantic import BaseModel

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    class Doc(BaseModel):
        url: str

    @tether.stage(id="fetch", input=Doc, output=Doc)
    async def fetch(ctx: tether.StageContext[Doc, None]) -> Doc:
        await ctx.artifacts.put("page.txt", ctx.input.url)
        return ctx.input

    @tether.stage(id="shout", input=Doc, output=Doc)
    async def shout(ctx: tether.StageContext[Doc, None]) -> Doc:
        await ctx.artifacts.put("loud.txt", ctx.input.url.upper())
        return Doc(url=ctx.input.url.upper())

    app.register(tether.Pipeline("doc", input=Doc, output=Doc).pipe(fetch).pipe(shout))
    """
)


def _first_stage() -> tether.Stage[Any, Any, Any]:
    """The pipeline's first stage, as the code that declares it has it."""

    class Doc(BaseModel):
        url: str

    @tether.stage(id="fetch", input=Doc, output=Doc)
    async def fetch(ctx: tether.StageContext[Doc, None]) -> Doc:
        return ctx.input

    return fetch


def _files(blobs: Path) -> list[str]:
    """The stage files under the run's folder, as 'stage/attempt/name'."""
    found = (p.relative_to(blobs / "runs" / "d1" / "stages") for p in blobs.rglob("*.txt~blob"))
    return sorted("/".join((f.parts[0], f.parts[1], f.name.removesuffix("~blob"))) for f in found)


@pytest.fixture
def doc_run(tmp_path: Path) -> Iterator[Client]:
    """A client of `tether serve` of the pipeline above, whose run "d1" has completed once."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    try:
        with Client(served.url) as client:
            client.start("doc", {"url": "a"}, workflow_id="d1")
            _ended(client, 1)
            yield client
    finally:
        served.stop()


def _ended(client: Client, attempt: int) -> None:
    def check() -> bool:
        rec = client.get_record("d1")
        return rec.status is RunStatus.COMPLETED and rec.attempt == attempt

    eventually_sync(check, timeout=30)


def test_a_rerun_over_http_removes_the_forgotten_stages_old_files(
    doc_run: Client, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"  # the files of a SQLite file's App, beside it
    assert _files(blobs) == ["fetch/1/page.txt", "shout/1/loud.txt"]
    assert doc_run.rerun_from("d1", "stage:shout.start") == ["d1"]
    _ended(doc_run, 2)
    # fetch was kept with its file; shout ran again in attempt 2, its old file gone
    assert _files(blobs) == ["fetch/1/page.txt", "shout/2/loud.txt"]


def test_a_pipeline_run_is_rerun_over_http_from_a_stage_named_by_its_id(
    doc_run: Client, tmp_path: Path
) -> None:
    # `app.rerun_from(run, "shout")` and `tether runs rerun d1 --from shout` take a stage's
    # id; the route refused it ("run 'd1' has no step 'shout'"): step keys alone
    blobs = tmp_path / "blobs"
    with pytest.raises(ApiError) as typo:
        doc_run.rerun_from("d1", "shuot")
    assert typo.value.status == 422, typo.value
    assert "did you mean stage 'shout'" in str(typo.value), typo.value
    with pytest.raises(ApiError) as unknown:
        doc_run.rerun_from("d1", "publish")
    assert unknown.value.status == 422
    assert "no stage or step 'publish'" in str(unknown.value)
    assert "stages: 'fetch', 'shout'" in str(unknown.value)
    assert doc_run.get_record("d1").attempt == 1  # refused: nothing changed
    assert doc_run.rerun_from("d1", "shout") == ["d1"]
    _ended(doc_run, 2)
    assert _files(blobs) == ["fetch/1/page.txt", "shout/2/loud.txt"]
    # the first stage, given as itself (as to `App.rerun_from`): all again; the client
    # failed to write a Stage as JSON
    assert doc_run.rerun_from("d1", _first_stage()) == ["d1"]
    _ended(doc_run, 3)
    assert _files(blobs) == ["fetch/3/page.txt", "shout/3/loud.txt"]
