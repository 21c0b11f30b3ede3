"""``POST /api/v1/runs/{id}/rerun`` forgets the files of the stages it forgets, as
`App.rerun_from` does: the HTTP route sent the rerun alone and left every forgotten
stage's files of the attempt before behind, for good."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tether import Client, RunStatus
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


def _files(blobs: Path) -> list[str]:
    """The stage files under the run's folder, as 'stage/attempt/name'."""
    found = (p.relative_to(blobs / "runs" / "d1" / "stages") for p in blobs.rglob("*.txt"))
    return sorted("/".join((f.parts[0], f.parts[1], f.parts[-1])) for f in found)


def test_a_rerun_over_http_removes_the_forgotten_stages_old_files(tmp_path: Path) -> None:
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    blobs = tmp_path / "blobs"  # the files of a SQLite file's App, beside it
    try:
        with Client(served.url) as client:
            wid = client.start("doc", {"url": "a"}, workflow_id="d1")

            def ended(attempt: int) -> bool:
                rec = client.get_record(wid)
                return rec.status is RunStatus.COMPLETED and rec.attempt == attempt

            eventually_sync(lambda: ended(1), timeout=30)
            assert _files(blobs) == ["fetch/1/page.txt", "shout/1/loud.txt"]
            assert client.rerun_from(wid, "stage:shout.start") == [wid]
            eventually_sync(lambda: ended(2), timeout=30)
            # fetch was kept with its file; shout ran again in attempt 2, its old file gone
            assert _files(blobs) == ["fetch/1/page.txt", "shout/2/loud.txt"]
    finally:
        served.stop()
