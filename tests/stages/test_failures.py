"""A stage that fails before its code runs is recorded as that stage's failure: an
input that does not fit, a recorded output that cannot be read back (its blob
deleted or damaged); the error says which stage, where and how to recompute it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import tether
from tether import App, RunStatus

from ._flows import Doc, Text, extract, keywords, summarize


def _failed(rec: tether.RunRecord) -> list[dict[str, object]]:
    return [e.detail for e in rec.events if e.type == "stage.failed"]


DAMAGE = {
    "missing": None,
    "truncated": b'{"text":"text of u text of',
    "not utf-8": b"\x00\xff\xfe garbage",
    "wrong shape": b'{"nope": 1}',
}
WHY = {
    "missing": "which the blob store no longer has",
    "truncated": "which is damaged: 26 bytes that are not UTF-8 JSON",
    "not utf-8": "which is damaged: 11 bytes that are not UTF-8 JSON",
    "wrong shape": r"which does not fit its output Text \(text: Field required",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_an_unreadable_output_blob_fails_naming_the_stage_blob_and_fix(
    database_url: str, damage: str
) -> None:
    app = App(database_url)
    p = tether.Pipeline("blobbed", input=Doc, inline_limit=10)  # every output is a blob
    p = p.pipe(extract).parallel([summarize, keywords])
    app.register(p)
    try:
        done = await app.arun(p, Doc(url="u"), workflow_id="d1")
        key = done.record.stages[0].output_blob
        assert key == "runs/d1/stages/extract/1/output.json"
        body = DAMAGE[damage]
        if body is None:
            await app.blobs.delete(key)
        else:
            await app.blobs.put(key, body)
        expected = (
            rf"output of stage 'extract' is recorded at blob '{key}', {WHY[damage]}.*"
            r"app\.rerun_from\('d1', 'extract'\)"
        )
        with pytest.raises(tether.StageError, match=expected):
            await app.arerun_from("d1", "summarize")
        rec = await app.aget_record("d1")
        assert rec.status is RunStatus.FAILED
        [failed] = _failed(rec)
        assert failed["stage"] == "extract" and "StageError" in str(failed["error"])
        # the stage that failed is the one whose output is unreadable, not the next one
        assert [s.status for s in rec.stages][:2] == ["failed", "skipped"]
        again = await app.arerun_from("d1", "extract")  # what the error says to do
        assert again.status is RunStatus.COMPLETED
    finally:
        await app.aclose()


class Counted(BaseModel):
    words: int


class Words(BaseModel):
    words: str  # fits Counted when built (a numeric string would do), not with "a b"


@tether.stage(id="split", input=Doc, output=Words)
async def split(ctx: tether.StageContext[Doc, None]) -> Words:
    return Words(words="a b")


@tether.stage(id="count", input=Counted, output=Text)
async def count(ctx: tether.StageContext[Counted, None]) -> Text:
    raise AssertionError("never runs: its input does not fit")


async def test_an_input_that_does_not_fit_is_the_stages_recorded_failure(app: App) -> None:
    p = tether.Pipeline("misfit", input=Doc).pipe(split).pipe(count)
    with pytest.raises(tether.StageError, match="the input of stage 'count' does not fit Counted"):
        await app.arun(p, Doc(url="u"), workflow_id="m1")
    rec = await app.aget_record("m1")
    assert [(s.id, s.status) for s in rec.stages] == [("split", "completed"), ("count", "failed")]
    assert "does not fit Counted" in (rec.stages[1].error or "")
    [failed] = _failed(rec)
    assert failed["stage"] == "count" and failed["attempt"] == 1
