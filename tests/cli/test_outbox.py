"""`tether outbox dead|replay`: the dead letters an operator reads and retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner, Result

from tether import App, FakeClock, InvalidArgumentError, Workflow

T0 = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


def _dead_letter(url: str) -> App:
    """A run whose first event a sink refused on its last attempt (the rest delivered)."""
    app = App(url, clock=FakeClock(T0))

    @app.workflow(name="notify")
    async def notify(wf: Workflow) -> int:
        return await wf.step("send", lambda: 1)

    app.run(notify, workflow_id="n1")
    error = "ConnectionError: webhook http://127.0.0.1:9/hook answered HTTP 503"
    app.run_sync(app.store.outbox_mark(delivered=[], failed=[("n1", 1, error, None)], at=T0))
    return app


def test_dead_letters_are_listed_with_their_error_then_replayed(database_url: str) -> None:
    app = _dead_letter(database_url)
    listed = invoke(database_url, "outbox", "dead")
    assert listed.exit_code == 0, listed.output
    assert "n1" in listed.output and "workflow.running" in listed.output
    assert "answered HTTP 503" in listed.output and "1 dead letter(s)" in listed.output
    as_json = json.loads(invoke(database_url, "outbox", "dead", "--json").output)
    assert [(d["workflowId"], d["seq"], d["attempts"], d["deadAt"]) for d in as_json] == [
        ("n1", 1, 1, T0.isoformat())
    ]
    assert as_json[0]["lastError"].endswith("answered HTTP 503")

    replayed = invoke(database_url, "outbox", "replay")
    assert replayed.exit_code == 0 and "1 dead letter(s) put back" in replayed.output
    assert "no dead letters" in invoke(database_url, "outbox", "dead").output
    [again] = [r for r in app.run_sync(app.store.outbox_pending(limit=10, now=None)) if r.seq == 1]
    assert again.attempts == 0  # tried afresh by the next outbox pass
    app.close()


def test_a_limit_below_one_is_refused(database_url: str) -> None:
    app = _dead_letter(database_url)
    bad = invoke(database_url, "outbox", "dead", "--limit", "0")
    assert bad.exit_code == 2 and "--limit" in bad.output
    for call in (lambda: app.dead_letters(limit=0), lambda: app.replay_dead_letters(limit=True)):
        try:
            call()
        except InvalidArgumentError as exc:
            assert "limit must be an integer >= 1" in str(exc)
        else:
            raise AssertionError("a limit below one was taken")
    assert len(app.dead_letters()) == 1  # nothing changed
    app.close()


def test_a_huge_limit_replays_them_all(database_url: str) -> None:
    """`outbox dead --limit 10**20` listed them all, `outbox replay --limit 10**20` was
    refused: "invalid argument: max_events: Input should be less than or equal to
    9223372036854775807", a field the command does not have."""
    app = _dead_letter(database_url)
    huge = str(10**20)
    listed = invoke(database_url, "outbox", "dead", "--limit", huge)
    assert listed.exit_code == 0 and "1 dead letter(s)" in listed.output, listed.output
    replayed = invoke(database_url, "outbox", "replay", "--limit", huge)
    assert replayed.exit_code == 0, replayed.output
    assert "1 dead letter(s) put back" in replayed.output
    assert app.dead_letters() == []
    assert app.replay_dead_letters(limit=10**20) == 0  # the API takes it as the command does
    app.close()
