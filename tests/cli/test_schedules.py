"""`tether schedules list|pause|resume`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from tether import App, FakeClock, Workflow

from ._helpers import tether


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


def test_schedules_are_listed_paused_and_resumed(database_url: str) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 16, 3, tzinfo=UTC))
    app = App(database_url, clock=clock)

    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    app.fire_schedules()  # saves the schedule
    listed = invoke(database_url, "schedules", "list")
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.output and "0 2 * * *" in listed.output
    # the next tick after the schedule's clock or the wall clock (the CLI reads the
    # latter), whichever is later
    after = max(clock.now(), datetime.now(UTC))
    day = after.date() if after.hour < 2 else after.date() + timedelta(days=1)
    assert f"{day:%Y-%m-%d} 02:00 UTC" in listed.output
    paused = invoke(database_url, "schedules", "pause", "nightly")
    assert paused.exit_code == 0 and "paused" in paused.output
    assert [r.paused for r in app.list_schedules()] == [True]
    assert "paused" in invoke(database_url, "schedules", "list").output
    resumed = invoke(database_url, "schedules", "resume", "nightly")
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert [r.paused for r in app.list_schedules()] == [False]
    for verb in ("pause", "resume"):  # not found, as a missing run is: 3, not a usage error
        unknown = invoke(database_url, "schedules", verb, "weekly")
        assert unknown.exit_code == 3, unknown.output
        assert "no schedule named 'weekly'" in unknown.output
        assert "known: nightly" in unknown.output and "tether schedules list" in unknown.output
    app.close()


def test_an_empty_database_lists_no_schedules(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    app.list_runs()  # creates the database
    app.close()
    listed = invoke(url, "schedules", "list")
    assert listed.exit_code == 0 and "no schedules" in listed.output
    as_json = invoke(url, "schedules", "list", "--json")
    assert as_json.exit_code == 0 and as_json.output.strip() == "[]", as_json.output
    unknown = invoke(url, "schedules", "resume", "nightly")
    assert unknown.exit_code == 3 and "known: none" in unknown.output


def test_names_with_brackets_are_listed_as_written(tmp_path: object) -> None:
    """A schedule's name is text, not rich markup: `[/v2]` crashed the table (a closing
    tag no one opened) and `[eu]` vanished from it."""
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)

    @app.workflow(name="nightly[/v2]", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    @app.workflow(name="report[eu]", schedule="0 3 * * *")
    async def report(wf: Workflow) -> str:
        return "ok"

    app.fire_schedules()
    app.close()
    listed = invoke(url, "schedules", "list")
    assert listed.exit_code == 0, listed.output
    assert "nightly[/v2]" in listed.output and "report[eu]" in listed.output


def test_a_long_name_is_folded_on_80_columns_not_cut(tmp_path: Path) -> None:
    # the name read "customer…" (and the next tick "2026-12-…"): nothing to pass to
    # `tether schedules pause NAME`
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    name = "customer-invoices-monthly-reconciliation-report"

    @app.workflow(name=name, schedule="0 2 * * *")
    async def monthly(wf: Workflow) -> str:
        return "ok"

    app.fire_schedules()
    app.close()
    listed = tether(tmp_path, "schedules", "list", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout, listed.stdout
    rows = [line.split("│") for line in listed.stdout.splitlines() if line.startswith("│")]
    assert "".join(r[1].strip() for r in rows) == name, listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80


def test_schedules_list_json_and_remove(database_url: str) -> None:
    """`list --json` was refused ("No such option"), where every other list has it; a
    schedule its App no longer declares was listed for ever with a next tick that never
    came, and no command could forget it."""
    import json

    clock = FakeClock(datetime(2026, 12, 1, 16, 3, tzinfo=UTC))
    app = App(database_url, clock=clock)

    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    app.schedule(nightly, cron="*/5 * * * *", name="old 5min", timezone="Europe/Berlin")
    app.fire_schedules()
    app.pause_schedule("old 5min")
    listed = invoke(database_url, "schedules", "list", "--json")
    assert listed.exit_code == 0, listed.output
    got = {s["name"]: s for s in json.loads(listed.output)}
    assert set(got) == {"nightly", "old 5min"}
    assert got["old 5min"]["paused"] is True and got["old 5min"]["nextTick"] is None
    assert got["old 5min"]["timezone"] == "Europe/Berlin"
    n = got["nightly"]
    assert (n["workflow"], n["cron"], n["queue"], n["missed"]) == (
        "nightly", "0 2 * * *", "default", "latest"
    )  # fmt: skip
    assert n["firedUntil"] == "2026-12-01T16:03:00+00:00"
    assert datetime.fromisoformat(n["nextTick"]).strftime("%H:%M %Z") == "02:00 UTC"
    removed = invoke(database_url, "schedules", "remove", "old 5min")
    assert removed.exit_code == 0 and "removed" in removed.output, removed.output
    assert [r.name for r in app.list_schedules()] == ["nightly"]
    gone = invoke(database_url, "schedules", "remove", "old 5min")
    assert gone.exit_code == 3 and "known: nightly" in gone.output
    app.close()
