"""`tether outbox dead` as an operator reads it: one row a dead letter."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner

from tether import App, FakeClock
from tether.store import NewEvent, NewRun

T0 = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def test_a_dead_letters_error_over_several_lines_is_shown_on_one(database_url: str) -> None:
    """A sink's error spanning lines (a plugin's traceback, a receiver's answer) took
    several rows of the table for each dead letter, the error's end wrapped among them."""
    from tether.cli import cli

    app = App(database_url, clock=FakeClock(T0))
    try:
        app.run_sync(app.store.create_run(NewRun("n1", "wf", state="null"), T0))
        app.run_sync(app.store.claim_run("n1", "owner", T0, NewEvent("workflow.running")))
        error = "ConnectionError: broker refused\n  reason: queue full\n  retry later"
        app.run_sync(app.store.outbox_mark(delivered=[], failed=[("n1", 1, error, None)], at=T0))
        listed = CliRunner().invoke(
            cli,
            ["outbox", "dead", "--db", database_url],
            env={"TETHER_DATABASE_URL": None, "COLUMNS": "200"},
        )
        assert listed.exit_code == 0, listed.output
        [line] = [ln for ln in listed.output.splitlines() if "n1" in ln]
        assert "ConnectionError: broker refused reason: queue full retry later" in line
        assert "reason" not in listed.output.replace(line, "")
    finally:
        app.close()
