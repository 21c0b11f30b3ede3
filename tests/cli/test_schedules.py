"""`tether schedules list|pause|resume`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
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
    # the CLI reads the wall clock: a 02:00 tick it passed since the schedule's clock
    # is due now (a worker starts it at once), else the next one is shown
    after = max(clock.now(), datetime.now(UTC))
    last = datetime.combine(after.date(), time(2), UTC)
    last -= timedelta(days=1) if after.hour < 2 else timedelta()
    shown = f"{last:%Y-%m-%d} 02:00 UTC, due now (1 missed tick)"
    if last <= clock.now():
        shown = f"{last + timedelta(days=1):%Y-%m-%d} 02:00 UTC"
    assert shown in " ".join(listed.output.split()), listed.output
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


def test_a_schedule_behind_shows_the_ticks_a_worker_starts_at_once(database_url: str) -> None:
    """A schedule no worker fired for years was listed with its next tick months
    away, while the first worker up started its missed ticks at once (each of them
    with missed="all")."""
    import json

    since = datetime(2020, 6, 1, tzinfo=UTC)
    app = App(database_url, clock=FakeClock(since))

    @app.workflow(name="yearly")
    async def yearly(wf: Workflow) -> str:
        return "ok"

    for missed in ("all", "latest", "skip"):
        app.schedule(yearly, cron="0 2 1 1 *", name=missed, missed=missed)
    app.fire_schedules()  # saves them, fired through 2020-06-01
    app.close()
    now = datetime.now(UTC)
    missed_ticks = [
        tick
        for tick in (datetime(year, 1, 1, 2, tzinfo=UTC) for year in range(2021, now.year + 2))
        if tick <= now
    ]
    coming = datetime(missed_ticks[-1].year + 1, 1, 1, 2, tzinfo=UTC)
    listed = invoke(database_url, "schedules", "list", "--json")
    assert listed.exit_code == 0, listed.output
    got = {s["name"]: (s["nextTick"], s["dueNow"]) for s in json.loads(listed.output)}
    assert got == {
        "all": (missed_ticks[0].isoformat(), len(missed_ticks)),
        "latest": (missed_ticks[-1].isoformat(), 1),
        "skip": (coming.isoformat(), 0),
    }
    table = " ".join(invoke(database_url, "schedules", "list").output.split())
    count = len(missed_ticks)
    assert f"{missed_ticks[0]:%Y-%m-%d} 02:00 UTC, due now ({count} missed ticks)" in table
    assert f"{missed_ticks[-1]:%Y-%m-%d} 02:00 UTC, due now (1 missed tick)" in table
    assert f"{coming:%Y-%m-%d} 02:00 UTC" in table


def test_pausing_twice_or_resuming_a_running_schedule_says_nothing_changed(
    database_url: str,
) -> None:
    """`schedules resume` of a schedule that was never paused said "resumed (from now:
    the ticks of the pause are not started)", of a pause that never was."""
    app = App(database_url, clock=FakeClock(datetime(2026, 12, 1, 16, 3, tzinfo=UTC)))

    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    app.fire_schedules()
    said = [
        invoke(database_url, "schedules", verb, "nightly")
        for verb in ("resume", "pause", "pause", "resume")
    ]
    assert [r.exit_code for r in said] == [0, 0, 0, 0], [r.output for r in said]
    assert [r.output.strip() for r in said] == [
        "schedule nightly was not paused: unchanged",
        "schedule nightly paused",
        "schedule nightly was already paused: unchanged",
        "schedule nightly resumed (from now: the ticks of the pause are not started)",
    ]
    assert [r.paused for r in app.list_schedules()] == [False]
    app.close()
