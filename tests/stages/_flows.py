"""Stages and pipelines shared by the stage tests (importable by child processes).

Side effects go to the file named by $STAGE_EFFECTS (one line per call), so
a test can count how often a stage's work really ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

import tether


class Doc(BaseModel):
    url: str


class Text(BaseModel):
    text: str
    words: int


class Summary(BaseModel):
    summary: str


class Keywords(BaseModel):
    words: list[str]


class Report(BaseModel):
    summary: str
    keywords: list[str]


class ExtractConfig(BaseModel):
    max_length: int = 200
    fail: bool = False


def effect(line: str) -> None:
    path = os.environ.get("STAGE_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


@tether.stage(id="extract", input=Doc, output=Text, config=ExtractConfig)
async def extract(ctx: tether.StageContext[Doc, ExtractConfig]) -> Text:
    await ctx.progress(0.1, "fetching")

    def fetch() -> str:
        effect("extract")
        return f"text of {ctx.input.url} " * 4

    text = await ctx.workflow.step("fetch", fetch)
    await ctx.log("info", "fetched", chars=len(text))
    return Text(text=text[: ctx.config.max_length], words=len(text.split()))


@tether.stage(id="summarize", input=Text, output=Summary)
async def summarize(ctx: tether.StageContext[Text, None]) -> Summary:
    def work() -> str:
        effect("summarize")
        marker = os.environ.get("STAGE_BLOCK_IN_SUMMARIZE")
        if marker:  # a crash test kills the process here, mid-stage
            Path(marker).touch()
            time.sleep(600)
        if os.environ.get("STAGE_SUMMARIZE_BROKEN"):
            raise RuntimeError("summarizer is broken")
        return ctx.input.text[:12]

    return Summary(summary=await ctx.workflow.step("summarize-text", work))


@tether.stage(id="keywords", input=Text, output=Keywords)
async def keywords(ctx: tether.StageContext[Text, None]) -> Keywords:
    def work() -> list[str]:
        effect("keywords")
        return sorted(set(ctx.input.text.split()))[:5]

    return Keywords(words=await ctx.workflow.step("pick", work))


@tether.stage(id="aggregate", output=Report, dependencies=["summarize", "keywords"])
async def aggregate(ctx: tether.StageContext[object, None]) -> Report:
    effect("aggregate")
    s = ctx.require(summarize)
    k = ctx.optional(keywords)
    return Report(summary=s.summary, keywords=k.words if k else [])


doc_pipeline = (
    tether.Pipeline("doc-processor", input=Doc, output=Report, version="1")
    .pipe(extract)
    .parallel([summarize, keywords])
    .pipe(aggregate)
)


async def barrier_pair() -> tuple[asyncio.Event, asyncio.Event]:
    return asyncio.Event(), asyncio.Event()
