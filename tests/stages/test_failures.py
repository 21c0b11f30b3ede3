"""A stage that fails before its code runs is recorded as that stage's failure: an
input that does not fit, a recorded output that cannot be read back (its blob
deleted or damaged); the error says which stage, where and how to recompute it."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError

import tether
from tether import App, RunStatus

from ._flows import Doc, Text, extract, keywords, summarize


def _failed(rec: tether.RunRecord) -> list[dict[str, object]]:
    return [e.detail for e in rec.events if e.type == "stage.failed"]


def _digit_changed(body: bytes) -> bytes:
    """`body` with its last digit changed: the same size, JSON that fits the model."""
    at = max(i for i, b in enumerate(body) if chr(b).isdigit())
    return body[:at] + (b"1" if body[at : at + 1] != b"1" else b"2") + body[at + 1 :]


# damage done to the blob -> the new bytes (None: the blob deleted)
DAMAGE: dict[str, Callable[[bytes], bytes | None]] = {
    "missing": lambda body: None,
    "truncated": lambda body: body[:-5],
    "not utf-8": lambda body: b"\x00\xff\xfe garbage",
    "wrong shape": lambda body: b'{"nope": 1}',
    # read back as a value until the sha256 was recorded: the wrong one, silently
    "same size, still fits": _digit_changed,
}


def _why(damage: str, written: int) -> str:
    sha = r"\(sha256 [0-9a-f]{16}\.\.\., written [0-9a-f]{16}\.\.\.\)"
    return {
        "missing": "which the blob store no longer has",
        "truncated": rf"which is damaged: it holds {written - 5} bytes, not the {written} "
        rf"written {sha}",
        "not utf-8": rf"which is damaged: it holds 11 bytes, not the {written} written {sha}",
        "wrong shape": rf"which is damaged: it holds 11 bytes, not the {written} written {sha}",
        "same size, still fits": rf"which is damaged: its {written} bytes are not those "
        rf"written {sha}",
    }[damage]


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
        written = await app.blobs.get(key)
        assert written is not None
        recorded = done.record.steps["stage:extract"].result
        assert recorded["sha256"] == hashlib.sha256(written).hexdigest()
        assert recorded["size"] == len(written)
        body = DAMAGE[damage](written)
        if body is None:
            await app.blobs.delete(key)
        else:
            assert body != written
            await app.blobs.put(key, body)
        expected = (
            rf"stage 'extract' of run 'd1' recorded its output at blob '{key}', "
            rf"{_why(damage, len(written))}.*app\.rerun_from\('d1', 'extract'\)"
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


async def test_an_input_that_does_not_fit_says_what_gave_it_and_where_to_rerun(
    app: App,
) -> None:
    p = tether.Pipeline("misfit-2", input=Doc).pipe(split).pipe(count)
    with pytest.raises(tether.StageError) as raised:
        await app.arun(p, Doc(url="u"), workflow_id="m2")
    assert str(raised.value).endswith(
        "; it is what stage 'split' gave: fix that (or Counted), then rerun from it: "
        "app.rerun_from('m2', 'split') or `tether runs rerun m2 --from split --app FILE.py:APP`"
    )
    # a model the pipeline's own input does not fit at run time: rerun from the stage
    first = tether.Pipeline("misfit-3", input=Words).pipe(count)
    with pytest.raises(tether.StageError) as raised:
        await app.arun(first, Words(words="a b"), workflow_id="m3")
    assert str(raised.value).endswith(
        "; it is the pipeline's input: make Counted take it, then rerun from this stage: "
        "app.rerun_from('m3', 'count')"
    )


async def test_an_output_blob_recorded_without_a_digest_is_still_decoded_and_checked(
    tmp_path: Path,
) -> None:
    # a record written by a tether before the digest: its blob is read as it was then
    # (decoded and validated), neither refused for the digest it lacks nor left unchecked
    db = tmp_path / "tether.db"
    app = App(f"sqlite:///{db}")
    p = tether.Pipeline("blobbed", input=Doc, inline_limit=10)
    p = p.pipe(extract).parallel([summarize, keywords])
    app.register(p)
    try:
        done = await app.arun(p, Doc(url="u"), workflow_id="old")
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE steps SET result = json_remove(result, '$.sha256', '$.size') "
                "WHERE run_id = 'old' AND step_key = 'stage:extract'"
            )
        assert set((await app.aget_record("old")).steps["stage:extract"].result) == {
            "attempt",
            "blob",
        }
        again = await app.arerun_from("old", "summarize")  # its intact blob reads back
        assert again.status is RunStatus.COMPLETED and again.value == done.value
        key = "runs/old/stages/extract/1/output.json"
        await app.blobs.put(key, b'{"text":"cut sh')
        with pytest.raises(tether.StageError, match=r"which is damaged: 15 bytes that are "
                           r"not UTF-8 JSON .*app\.rerun_from\('old', 'extract'\)"):  # fmt: skip
            await app.arerun_from("old", "summarize")
    finally:
        await app.aclose()


async def test_a_stage_error_reads_as_the_runs_last_error_does(app: App) -> None:
    """The stage table showed repr(exc): a pydantic ValidationError (raised by the
    stage's own code building a model) without its type, every error's lines as one
    line of escapes."""

    class Positive(BaseModel):
        n: int = Field(gt=0)

    @tether.stage(id="build", input=Doc, output=Positive)
    async def build(ctx: tether.StageContext[Doc, None]) -> Positive:
        return Positive(n=0)

    @tether.stage(id="two-lines", input=Doc, output=Text)
    async def two_lines(ctx: tether.StageContext[Doc, None]) -> Text:
        raise RuntimeError("first line\nsecond line")

    for stage, wid in ((build, "v1"), (two_lines, "v2")):
        with pytest.raises((ValidationError, RuntimeError)):
            await app.arun(tether.Pipeline(f"p-{wid}", input=Doc).pipe(stage), Doc(url="u"),
                           workflow_id=wid)  # fmt: skip
    v1, v2 = [await app.aget_record(w) for w in ("v1", "v2")]
    assert v1.last_error is not None and v2.last_error is not None
    assert v1.stages[0].error == f"ValidationError: {v1.last_error.message}"
    assert v1.stages[0].error.startswith("ValidationError: 1 validation error for Positive\nn\n")
    assert v2.stages[0].error == "RuntimeError: first line\nsecond line"


async def test_an_error_a_stage_raises_carries_a_note_naming_the_stage(app: App) -> None:
    @tether.stage(id="fragile", input=Doc, output=Text)
    async def fragile(ctx: tether.StageContext[Doc, None]) -> Text:
        raise KeyError("page")

    p = tether.Pipeline("noted", input=Doc).pipe(fragile)
    with pytest.raises(KeyError) as raised:  # the stage's own error, as it raised it
        await app.arun(p, Doc(url="u"), workflow_id="n1")
    note = (
        "raised in stage 'fragile' of pipeline 'noted' (run 'n1'); after a fix, rerun from "
        "it: app.rerun_from('n1', 'fragile')"
    )
    assert raised.value.__notes__ == [note]
    rec = await app.aget_record("n1")
    assert rec.last_error is not None and note in (rec.last_error.traceback or "")
