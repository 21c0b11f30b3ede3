"""`tether usage`: AI calls, tokens and cost, from the call log."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.table import Table

from ..app import App
from ..store import AIUsageRow
from ._common import (
    EXIT_USAGE,
    CliState,
    db_state,
    fail,
    out,
    print_json,
    text,
    window,
    window_options,
)
from ._db import use_app
from ._format import row
from ._format import table as fitted_table  # `table` names the one built here

__all__ = ["usage", "usage_table"]


_NUMBERS = ("calls", "input", "cached", "output", "reasoning", "cost (USD)", "unpriced")


def usage_table(rows: list[AIUsageRow], group: str, total: AIUsageRow | None = None) -> Table:
    """The rows, then `total` as "all". On a narrow terminal every cell folds onto more
    lines, none is cut: with rich's default ellipsis "summarise" read "summari…" on 80
    columns, and a cost of 0.002000 read "0.00…" on 60; too narrow for every column, a
    block of lines per row (see `_format.table`). By stage, the calls outside any
    stage group under None: "(no stage)", where "all" read as a second total."""
    table = fitted_table(group, *_NUMBERS)
    for column in table.columns[1:]:
        column.justify = "right"
    shown = [(r, r.group or f"(no {group})") for r in rows]
    for r, label in shown + ([] if total is None else [(total, "all")]):
        row(
            table,
            label,
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
    type=click.Choice(["model", "workflow", "day", "run", "stage"]),
    default="model",
    show_default=True,
    help="One row per model, per workflow, per day (UTC), per run, or per pipeline "
    "stage (its current attempt's calls; the calls outside any stage under "
    '"(no stage)").',
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--run", "run_id", metavar="ID", help="Only this run's calls.")
@click.option("--children", is_flag=True, help="With --run: its child runs' calls too.")
@click.option("--tag", metavar="TAG", help="Only runs with this tag.")
@window_options(
    "Calls at or after: 2026-12-01, an ISO time, or 7d.",
    "Calls before: 2026-12-01, an ISO time, or 1h.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print JSON: {"rows": [...], "total": {...}}, fields as the API\'s /usage '
    "(cost_micro_usd of the priced calls; unknown_cost_calls at no known price).",
)
@db_state
def usage(
    state: CliState,
    group_by: str,
    workflow: str | None,
    run_id: str | None,
    children: bool,
    tag: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """AI calls, tokens and cost from the call log. A call to a model with no known
    price counts in `unpriced`, never as $0."""
    start, end = window(since, until)
    for value, option in ((workflow, "--workflow"), (tag, "--tag"), (run_id, "--run")):
        if value is not None:  # blank (an unset shell variable) matched nothing: "no AI
            text(value, option)  # calls recorded" and exit 0, as if none had been made
    # App.usage ignores children without a run: every run was summed
    if run_id is None and children:
        fail(EXIT_USAGE, "--children counts a run's child runs; give the run: --run ID")

    def read(a: App) -> tuple[list[AIUsageRow], list[AIUsageRow]]:
        def sums(by: str | None) -> list[AIUsageRow]:
            return a.usage(
                workflow=workflow, tag=tag, since=start, until=end, group_by=by,
                run=run_id, children=children,
            )  # fmt: skip

        return sums(group_by), sums(None)

    rows, total = use_app(state, read)
    if as_json:  # for a ledger kept longer than the runs (pruning deletes their calls)
        # "total" is always an object of the rows' keys: zero calls sum to zeros, so a
        # script reads total["calls"] of an empty window as 0 (null made it a TypeError)
        # (App.usage without group_by is one row on both stores, zeros when no call matched)
        print_json({"rows": [asdict(r) for r in rows], "total": asdict(total[0])})
        return
    if not total or total[0].calls == 0:
        print("no AI calls recorded for these filters")
        return
    out.print(usage_table(rows, group_by, total[0]))
