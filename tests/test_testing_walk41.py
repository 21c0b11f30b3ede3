"""tether.testing walked as a user testing the examples would: the README's fixtures,
`pass_time` through a week's wait, signals and events sent by the test, retries and
compensation asserted on the record, the fake model, a schedule, a queued run driven
by a `ServerlessHost`; and the misuses that failed with an AttributeError."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tether
from tether import ai
from tether.testing import FakeClock, eventually, eventually_sync, pass_time
from tether.worker import ServerlessHost

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    """examples/NAME.py as a module (its own App is built, never used or opened)."""
    key = f"walk41_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


approval = _example("approval")
apply_batch = _example("apply_batch")
ai_triage = _example("ai_triage")


async def test_an_approval_signalled_by_the_test_publishes(tether_app: tether.App) -> None:
    parked = await tether_app.arun(approval.publish, "Q3", workflow_id="p1")
    assert parked.status is tether.RunStatus.WAITING
    assert await tether_app.asignal("p1", "approval", {"by": "ada"})
    done = await tether_app.aresult("p1", timeout=10)
    assert done.value == "published, approved by ada"
    assert list(done.record.steps) == ["draft", "publish"]


async def test_an_approval_nobody_gives_expires_after_a_week(
    tether_app: tether.App, tether_clock: FakeClock
) -> None:
    start = tether_clock.now()
    await tether_app.arun(approval.publish, "Q3", workflow_id="p1")
    assert await pass_time(tether_app, timedelta(days=6)) == []  # not due yet
    assert await pass_time(tether_app, timedelta(days=2)) == ["p1"]
    run = await tether_app.aget_run("p1")
    assert run.finished_at is not None and run.finished_at - start == timedelta(days=7)
    assert (await tether_app.aresult("p1", timeout=10)).value == "expired without approval"


async def test_apply_batch_retries_each_dropped_session_once(
    tether_app: tether.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_batch.random, "random", lambda: 0.0)  # every first try drops
    monkeypatch.setattr(apply_batch, "adapter_calls", 0)
    done = await tether_app.arun(apply_batch.apply_batch, workflow_id="b1")
    assert done.value == {"applied": 4, "duplicates": 1, "failed": 0}
    applies = {k: s.attempts for k, s in done.record.steps.items() if k.startswith("apply@")}
    assert sorted(applies.values()) == [2, 2, 2, 2]
    assert [e.type for e in done.record.events].count("step.retrying") == 4
    assert done.record.leases["batch-slot"].released_at is not None
    assert apply_batch.adapter_calls == 8
    again = await tether_app.arun(apply_batch.apply_batch, workflow_id="b1")
    assert again.value == done.value and apply_batch.adapter_calls == 8  # from the record


@pytest.fixture
def tether_app_options() -> dict[str, Any]:
    model = ai.FakeModel(ai_triage.SCRIPT)
    return {"ai": ai.Providers(demo=model, prices=ai_triage.prices)}


async def test_triage_on_the_fake_model_is_asked_again_and_priced(
    tether_app: tether.App,
) -> None:
    done = await tether_app.arun(ai_triage.triage, ai_triage.TICKETS[:1], workflow_id="t1")
    assert done.value == ["URGENT [bug] Raise the worker's memory limit and rerun the export."]
    calls = await tether_app.alist_ai_calls("t1")
    assert [c.call_type for c in calls] == ["object", "object", "text"]  # a bad answer re-asked
    assert done.record.usage is not None and done.record.usage.total.cost_micro_usd > 0


async def test_a_failed_run_undoes_its_charge(tether_app: tether.App) -> None:
    refunds: list[str] = []

    async def order(wf: tether.Workflow) -> None:
        await wf.step("charge", lambda: "ch_1", compensate=lambda: refunds.append("ch_1"))
        await wf.step("ship", _out_of_stock)

    with pytest.raises(LookupError, match="out of stock"):
        await tether_app.arun(order, workflow_id="o1")
    record = await tether_app.aget_record("o1")
    assert (record.status.value, refunds) == ("compensated", ["ch_1"])
    assert record.last_error is not None and record.last_error.type == "LookupError"


def _out_of_stock() -> None:
    raise LookupError("out of stock")


async def test_an_event_sent_by_the_test_wakes_the_matching_wait(tether_app: tether.App) -> None:
    async def paid(wf: tether.Workflow) -> Any:
        return await wf.wait_for_event("order.paid", match={"order": 7}, timeout=3600)

    await tether_app.arun(paid, workflow_id="e1")
    assert await tether_app.asend_event("order.paid", {"order": 8}) == []
    assert await tether_app.asend_event("order.paid", {"order": 7, "usd": 3}) == ["e1"]
    assert (await tether_app.aresult("e1", timeout=10)).value == {"order": 7, "usd": 3}


async def test_a_schedule_ticks_and_a_queued_run_is_driven_by_a_host(
    tether_app: tether.App,
) -> None:
    tether_app.schedule(approval.publish, cron="0 * * * *", input="hourly")
    tick = "publish@2026-01-01T01:00:00Z"
    assert await pass_time(tether_app, timedelta(hours=1)) == [tick]
    assert (await tether_app.aget_run(tick)).status is tether.RunStatus.WAITING

    async def nap(wf: tether.Workflow) -> str:
        await wf.sleep(60)
        return "rested"

    await tether_app.asubmit(nap, workflow_id="q1")  # queued: a worker's, not pass_time's
    host = ServerlessHost(tether_app)
    assert (await host.aprocess_available_jobs()).processed == 1
    assert await pass_time(tether_app, 60) == ["q1"]
    assert (await host.aprocess_available_jobs()).processed == 1
    assert (await tether_app.aresult("q1", timeout=10)).value == "rested"


async def test_pass_time_given_the_clock_says_it_takes_the_app(tether_clock: FakeClock) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"pass_time\(app, by\), got a FakeClock"):
        await pass_time(tether_clock, 60)  # type: ignore[arg-type]


async def test_eventually_given_the_app_as_clock_is_refused_up_front(
    tether_app: tether.App,
) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"got App \(pass its clock"):
        await eventually(lambda: True, clock=tether_app)  # type: ignore[arg-type]
    with pytest.raises(tether.InvalidArgumentError, match="must be a FakeClock"):
        eventually_sync(lambda: False, clock=tether.SystemClock(), timeout=1)  # type: ignore[arg-type]
