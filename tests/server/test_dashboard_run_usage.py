"""A run's AI usage on its page: the table per model in the usage page's order (the
costliest model first, those at no known price last, each counted as unpriced)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether import Client

from ._serve import Served, start
from .test_dashboard import done

FLOWS = textwrap.dedent(
    """
    import os

    import tether
    from tether import ai

    prices = ai.Prices({
        "demo:aaa-cheap": {"input_per_million": 0.10, "output_per_million": 0.20},
        "demo:mmm-mid": {"input_per_million": 1.00, "output_per_million": 2.00},
        "demo:zzz-dear": {"input_per_million": 30.0, "output_per_million": 60.0},
    })
    model = ai.FakeModel(lambda name, request: "An answer in a few words.")
    app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

    @app.workflow
    async def asks(wf: tether.Workflow) -> None:
        # by name: aaa-cheap, bbb-unknown, mmm-mid, zzz-dear; by cost: the other way,
        # the model at no known price last
        for name in ("demo:aaa-cheap", "demo:bbb-unknown", "demo:mmm-mid", "demo:zzz-dear"):
            await wf.ai.generate_text(name, prompt="a question")
    """
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def _table(html: str, caption: str) -> list[list[str]]:
    """The body rows of the table of `caption`, each cell as its text."""
    table = html.split(f"<caption>{caption}</caption>", 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_a_runs_usage_per_model_is_sorted_by_cost_unknown_last(served: Served) -> None:
    # the usage page's tables list the costliest first; a run's own table listed its
    # models by name, the cheapest and the dearest side by side
    with Client(served.url) as client:
        wid = client.start("asks")
        done(client, wid)
    page = httpx.get(f"{served.url}/runs/{wid}")
    assert page.status_code == 200
    rows = _table(page.text, "Per model")
    assert [r[0] for r in rows] == ["demo:zzz-dear", "demo:mmm-mid", "demo:aaa-cheap",
                                    "demo:bbb-unknown"]  # fmt: skip
    costs = [r[-1] for r in rows]
    assert costs[-1] == "unknown +1 unpriced", costs  # counted, never $0
    dollars = [float(c.lstrip("$")) for c in costs[:-1]]
    assert dollars == sorted(dollars, reverse=True) and dollars[-1] > 0, costs
