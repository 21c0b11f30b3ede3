"""A batch's results are keyed by provider, batch id and custom id: batch ids are
the provider's own, and two providers (a local or proxy one numbers its batches
1, 2, 3) may hand out the same one. Against two real local provider servers that
number their batches alike, on both backends, on a fake clock."""

from __future__ import annotations

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer


async def test_two_providers_batches_with_the_same_ids_are_both_recorded(
    database_url: str, clock: FakeClock
) -> None:
    """Both servers answer the same batch id; each batch asks custom ids "0" and "1".
    The second batch's results were dropped as a conflict with the first's (the key
    was (batch_id, custom_id)): its run's call log was empty and its spend unknown
    to the budgets."""
    first, second = ProviderServer(), ProviderServer()
    providers = ai.Providers(
        anthropic=ai.Anthropic(api_key="k", base_url=first.anthropic_url),
        proxy=ai.Anthropic(api_key="k", base_url=second.anthropic_url),
    )
    app = App(database_url, clock=clock, ai=providers, inline_wait=0)

    @app.workflow(name="batched")
    async def batched(wf: Workflow, model: str) -> str:
        return (await wf.ai.batch(model, ["q0", "q1"], poll_every=60, max_wait=600)).batch_id

    try:
        ids = {}
        for pname, server in (("anthropic", first), ("proxy", second)):
            started = await app.arun(batched, f"{pname}:claude-sonnet-4-5", workflow_id=pname)
            assert started.status is RunStatus.WAITING
            server.finish_batches()
            clock.advance(60)
            await app.afire_due_timers()
            done = await app.aresult(pname, timeout=10)
            assert done.status is RunStatus.COMPLETED, done.record.last_error
            ids[pname] = done.value
        assert ids["anthropic"] == ids["proxy"]  # the collision this is about
        for pname in ("anthropic", "proxy"):
            calls = await app.alist_ai_calls(pname)
            got = sorted((c.provider, c.batch_id, c.custom_id) for c in calls)
            assert got == [(pname, ids[pname], "0"), (pname, ids[pname], "1")]
            assert all(c.output_tokens > 0 for c in calls)
    finally:
        await app.aclose()
        first.close()
        second.close()
