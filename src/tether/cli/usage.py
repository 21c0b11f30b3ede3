"""`tether usage`: AI calls, tokens and cost, from the call log."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from .._durations import parse_when
from ..app import App
from ..errors import TetherError
from ..store import AIUsageRow
from ._common import EXIT_USAGE, CliState, db_state, fail, out
from ._db import use_app

__all__ = ["usage", "usage_table"]


def usage_table(rows: list[AIUsageRow], group: str) -> Table:
    table = Table(
        group, "calls", "input", "cached", "output", "reasoning", "cost (USD)", "unpriced"
    )
    for r in rows:
        table.add_row(
            r.group or "all",
            str(r.calls),
            f"{r.input_tokens:,}",
            f"{r.cached_input_tokens:,}",
            f"{r.output_tokens:,}",
            f"{r.reasoning_tokens:,}",
            "unknown" if r.known_cost_usd is None else f"{r.known_cost_usd:.6f}",
            str(r.unknown_cost_calls) if r.unknown_cost_calls else "",
        )
    return table


@click.command("usage")
@click.option(
    "--by",
    "group_by",
    type=click.Choice(["model", "workflow", "day"]),
    default="model",
    show_default=True,
    help="One row per model, per workflow or per day (UTC).",
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--tag", metavar="TAG", help="Only runs with this tag.")
@click.option("--since", metavar="WHEN", help="Calls at or after: 2026-12-01, an ISO time, or 7d.")
@click.option("--until", metavar="WHEN", help="Calls before: 2026-12-01, an ISO time, or 1h.")
@db_state
def usage(
    state: CliState,
    group_by: str,
    workflow: str | None,
    tag: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """AI calls, tokens and cost from the call log. A call to a model with no known
    price counts in `unpriced`, never as $0."""
    now = datetime.now(UTC)
    try:
        start = parse_when(since, now) if since else None
        end = parse_when(until, now) if until else None
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))

    def read(a: App) -> tuple[list[AIUsageRow], list[AIUsageRow]]:
        rows = a.usage(workflow=workflow, tag=tag, since=start, until=end, group_by=group_by)
        return rows, a.usage(workflow=workflow, tag=tag, since=start, until=end)

    rows, total = use_app(state, read)
    if not total or total[0].calls == 0:
        print("no AI calls recorded for these filters")
        return
    out.print(usage_table([*rows, *total], group_by))
