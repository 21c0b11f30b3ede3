"""A document pipeline of typed stages: extract -> (summarize | keywords) -> aggregate.

Runs offline: `ai.FakeModel` answers the model calls with usage, and a price
table prices them, so the run's cost is real arithmetic over its call log.

    .venv/bin/python examples/document_pipeline.py

Run it twice: the second run answers every stage from the record. Then try
``tether runs show doc-demo --db sqlite:///.tether/document_pipeline.db`` and
``tether runs rerun doc-demo --from summarize --app examples.document_pipeline:app``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import tether
from tether import ai
from tether.stages import AIConfig

DB = Path(__file__).resolve().parent.parent / ".tether" / "document_pipeline.db"

ARTICLE = (
    "Durable execution records each step of a program so that a crash resumes it "
    "where it stopped. Agent harnesses need it: model calls cost money, and a "
    "repeated side effect (an email, a payment) cannot be taken back. "
) * 3


class Doc(BaseModel):
    title: str
    body: str


class Text(BaseModel):
    text: str
    words: int


class Summary(BaseModel):
    summary: str


class Keywords(BaseModel):
    keywords: list[str]


class Report(BaseModel):
    title: str
    summary: str
    keywords: list[str]
    words: int


class ExtractConfig(BaseModel):
    max_length: int = 20_000


class SummarizeConfig(AIConfig):
    model: str = "demo:small"
    max_tokens: int | None = 120


@tether.stage(id="extract", input=Doc, output=Text, config=ExtractConfig)
async def extract(ctx: tether.StageContext[Doc, ExtractConfig]) -> Text:
    await ctx.progress(0.2, "normalising whitespace")
    text = " ".join(ctx.input.body.split())[: ctx.config.max_length]
    await ctx.artifacts.put("clean.txt", text)  # kept with the run, removed with it
    await ctx.progress(1.0, "done")
    return Text(text=text, words=len(text.split()))


@tether.stage(id="summarize", input=Text, output=Summary, config=SummarizeConfig)
async def summarize(ctx: tether.StageContext[Text, SummarizeConfig]) -> Summary:
    reply = await ctx.ai.generate_text(
        ctx.config.model,
        prompt=f"Summarise in one sentence:\n{ctx.input.text}",
        max_tokens=ctx.config.max_tokens,
        temperature=ctx.config.temperature,
    )
    return Summary(summary=reply.text)


@tether.stage(id="keywords", input=Text, output=Keywords)
async def keywords(ctx: tether.StageContext[Text, None]) -> Keywords:
    found = await ctx.ai.generate_object(
        "demo:small", Keywords, prompt=f"Five keywords for:\n{ctx.input.text}"
    )
    await ctx.log("info", "keywords picked", count=len(found.object.keywords))
    return found.object


@tether.stage(id="aggregate", output=Report, dependencies=[extract, summarize, keywords])
async def aggregate(ctx: tether.StageContext[Any, None]) -> Report:
    text = ctx.require(extract)
    return Report(
        title=ctx.workflow.workflow_id,
        summary=ctx.require(summarize).summary,
        keywords=ctx.require(keywords).keywords,
        words=text.words,
    )


pipeline = (
    tether.Pipeline("document-pipeline", input=Doc, output=Report, version="1")
    .pipe(extract)
    .parallel([summarize, keywords])
    .pipe(aggregate)
)


def answer(model: str, request: Any) -> str:
    """The scripted model: a summary, or keywords as JSON (any number of times)."""
    if request.json_schema is not None:
        return '{"keywords": ["durable execution", "crash", "agents", "cost", "side effects"]}'
    return (
        "Durable execution resumes a crashed program where it stopped, which agent "
        "harnesses need because model calls cost money and side effects cannot repeat."
    )


model = ai.FakeModel(answer)
prices = ai.Prices({"demo:small": {"input_per_million": 0.40, "output_per_million": 1.60}})
DB.parent.mkdir(exist_ok=True)
app = tether.App(f"sqlite:///{DB}", ai=ai.Providers(demo=model, prices=prices))
app.register(pipeline)


def show(workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
    """Print stage progress as it is recorded."""
    if type_ == "stage.started":
        print(f"  {detail['stage']:<10} started (group {detail['group']})")
    elif type_ == "stage.progress":
        print(f"  {detail['stage']:<10} {detail['fraction']:.0%} {message or ''}")
    elif type_ == "stage.completed":
        print(f"  {detail['stage']:<10} completed in {detail['seconds']:.3f}s")


def main() -> int:
    done = app.run(
        pipeline,
        Doc(title="durable execution", body=ARTICLE),
        config={"extract": {"max_length": 400}},
        workflow_id="doc-demo",
        on_event=show,
    )
    report = done.value
    print(f"summary:  {report.summary}")
    print(f"keywords: {', '.join(report.keywords)} ({report.words} words)")
    for s in done.record.stages:
        cost = f"${s.usage.cost_usd:.6f}" if s.usage else "-"
        print(f"  stage {s.id:<10} {s.status:<9} attempt {s.attempt}  AI {cost}")
    total = done.record.usage.total if done.record.usage else None
    print(f"run cost: ${total.cost_usd:.6f} over {total.calls} model calls" if total else "")
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
