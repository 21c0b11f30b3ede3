"""A submit retried looks for the batch an earlier attempt left, by its tag: the run
id alone named it, so a run reusing a pruned run's id took the pruned run's batch
(answers to other prompts). The official SDK talks to a real local server; time is
a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer

MODEL = "openai:gpt-4.1-mini"
STEP = "ai.batch:openai:gpt-4.1-mini"


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    providers = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=server.openai_url))
    return App(database_url, clock=clock, ai=providers, inline_wait=0)


def _asker(app: App) -> Any:
    @app.workflow(name="asker")
    async def asker(wf: Workflow, prompts: list[str]) -> dict[str, str | None]:
        res = await wf.ai.batch(MODEL, prompts, poll_every=60, max_wait=3600)
        return {k: v.text for k, v in res.items.items()}

    return asker


async def _done(app: App, clock: FakeClock, server: ProviderServer, wid: str) -> Any:
    server.finish_batches()
    clock.advance(60)
    await app.afire_due_timers()
    done = await app.aresult(wid, timeout=10)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    return done.value


async def test_a_run_reusing_a_pruned_runs_id_does_not_take_its_batch(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """Before, the new run's retried submit found the pruned run's batch (tagged with
    the same run and step), and returned its answers: ``echo: old``."""
    app = _app(database_url, clock, server)
    asker = _asker(app)
    await app.arun(asker, ["old"], workflow_id="same")
    assert await _done(app, clock, server, "same") == {"0": "echo: old"}
    clock.advance(3600)
    assert await app.aprune("30m") == 1
    server.fail_next(503, path="/v1/files")  # the upload fails: the submit is retried
    await app.arun(asker, ["new"], workflow_id="same")
    assert await _done(app, clock, server, "same") == {"0": "echo: new"}
    assert server.state.counts["POST /v1/batches"] == 2
    [old, new] = [b["metadata"] for b in server.state.batches.values()]
    assert old["tether_run"] == new["tether_run"] == "same"
    assert old["tether_run_created"] != new["tether_run_created"]
    await app.aclose()


async def _older_tethers_batch(server: ProviderServer, wid: str) -> None:
    """A batch as an older tether tagged it (no run creation), asking "left"."""
    items = [ai.BatchItem(custom_id="0", request=ai.TextRequest(messages=[_user("left")]))]
    openai = ai.OpenAI(api_key="k", base_url=server.openai_url)
    await openai.batch_submit("gpt-4.1-mini", items, tag={"tether_run": wid, "tether_step": STEP})
    await openai.aclose()


def _user(text: str) -> ai.Message:
    return ai.Message(role="user", content=text)


async def test_an_older_tethers_batch_is_taken_by_a_run_created_before_it(
    database_url: str, server: ProviderServer
) -> None:
    """A batch an older tether submitted (before the upgrade) for a run that still
    exists, tagged without the run's creation: a retried submit takes it, not paying
    for a second. The run was created before it (by the server's clock, 2025-12-01)."""
    clock = FakeClock(datetime(2025, 11, 1, tzinfo=UTC))
    app = _app(database_url, clock, server)
    await _older_tethers_batch(server, "up")
    server.fail_next(503, path="/v1/files")
    await app.arun(_asker(app), ["a"], workflow_id="up")
    assert await _done(app, clock, server, "up") == {"0": "echo: left"}
    assert server.state.counts["POST /v1/batches"] == 1
    await app.aclose()


async def test_an_older_tethers_batch_made_before_the_run_is_not_taken(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """The same batch, created before the run (2026-01-01 by the fake clock): a pruned
    run of the same id submitted it, so the retried submit makes the run's own."""
    app = _app(database_url, clock, server)
    await _older_tethers_batch(server, "up")
    server.fail_next(503, path="/v1/files")
    await app.arun(_asker(app), ["a"], workflow_id="up")
    assert await _done(app, clock, server, "up") == {"0": "echo: a"}
    assert server.state.counts["POST /v1/batches"] == 2
    await app.aclose()
