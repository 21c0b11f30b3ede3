"""``GET /api/v1/usage?group_by=stage``: AI usage per pipeline stage, as `App.usage`
gives it, over HTTP on each database."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import Client, RunStatus

from .._postgres import PostgresServer
from ._serve import Served, start
from .test_dashboard import done

FLOWS = textwrap.dedent(
    """
    import os

    from pydantic import BaseModel

    import tether
    from tether import ai

    prices = ai.Prices({"demo:small": {"input_per_million": 0.40, "output_per_million": 1.60}})
    model = ai.FakeModel(lambda name, request: "three short words")
    app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

    class Doc(BaseModel):
        url: str

    class Text(BaseModel):
        text: str

    @tether.stage(id="extract", input=Doc, output=Text)
    async def extract(ctx: tether.StageContext[Doc, None]) -> Text:
        await ctx.ai.generate_text("demo:small", prompt="a")
        await ctx.ai.generate_text("demo:small", prompt="b")
        return Text(text=ctx.input.url)

    @tether.stage(id="shout", input=Text, output=Text)
    async def shout(ctx: tether.StageContext[Text, None]) -> Text:
        reply = await ctx.ai.generate_text("demo:small", prompt=ctx.input.text)
        return Text(text=reply.text.upper())

    pipeline = tether.Pipeline("doc", input=Doc, output=Text, version="1").pipe(extract).pipe(shout)
    app.register(pipeline)
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def staged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`tether serve` of a pipeline whose stages call a model, on each database."""
    if request.param == "sqlite":
        s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
        yield s
        s.stop()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    s = start(tmp_path, postgres.url_with_schema(schema), flows=FLOWS)
    yield s
    s.stop()
    postgres.drop_schema(schema)


def test_usage_grouped_by_stage_sums_each_stages_calls(staged: Served) -> None:
    # App.usage(group_by="stage") answers; the API refused it (422: "Input should be
    # 'model', 'workflow', 'day' or 'run'")
    with Client(staged.url) as client:
        wid = client.start("doc", {"url": "https://example.com/a"})
        done(client, wid, RunStatus.COMPLETED)
        rows = {row.group: row for row in client.usage(group_by="stage", run=wid)}
    assert set(rows) == {"extract", "shout"}, rows
    assert (rows["extract"].calls, rows["shout"].calls) == (2, 1)
    assert rows["extract"].cost_micro_usd > rows["shout"].cost_micro_usd > 0
