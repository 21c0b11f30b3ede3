"""wf.ai end to end: durable calls, the call log, budgets and batches, on both
backends, with the official SDKs talking to a real local server."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, Workflow, ai
from tether.testing import eventually

from .._env import child_pythonpath
from ._server import ProviderServer


class Verdict(BaseModel):
    label: str
    confidence: float


def _providers(server: ProviderServer, **extra: ai.Provider) -> ai.Providers:
    return ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
        local=ai.OpenAICompatible(base_url=server.openai_url),
        **extra,
    )


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock, ai=_providers(server))
    yield the_app
    await the_app.aclose()


# -- durable calls and the log ------------------------------------------------------------


async def test_a_call_is_a_step_recorded_once_and_a_replay_asks_nothing(
    app: App, server: ProviderServer
) -> None:
    server.queue_chat("a summary", prompt_tokens=1200, cached_tokens=1000, completion_tokens=300)
    server.queue_message(
        "a label", input_tokens=50, cache_read=1000, cache_write=150, output_tokens=80
    )

    @app.workflow(name="two-models")
    async def two(wf: Workflow, text: str) -> list[str]:
        a = await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=text, max_tokens=50)
        b = await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt=a.text)
        return [a.text, b.text]

    done = await app.arun(two, "hello", workflow_id="t1")
    assert done.value == ["a summary", "a label"]
    assert server.count("POST /v1/") == 2
    again = await app.arun(two, "hello", workflow_id="t1")  # the recorded answer
    assert again.value == ["a summary", "a label"] and server.count("POST /v1/") == 2
    calls = await app.alist_ai_calls("t1")
    assert [(c.provider, c.model, c.call_type) for c in calls] == [
        ("openai", "gpt-4.1-mini", "text"),
        ("anthropic", "claude-sonnet-4-5", "text"),
    ]
    openai_call, anthropic_call = calls
    assert (openai_call.input_tokens, openai_call.cached_input_tokens) == (1200, 1000)
    assert openai_call.cost_micro_usd == 660  # 200 x 0.40 + 1000 x 0.10 + 300 x 1.60
    assert (anthropic_call.input_tokens, anthropic_call.cache_write_tokens) == (1200, 150)
    assert anthropic_call.cost_micro_usd == 2213  # 2212.5 rounded half up
    assert openai_call.request_id and openai_call.price_source
    usage = (await app.aget_record("t1")).usage
    assert usage is not None
    assert (usage.total.calls, usage.total.cost_micro_usd) == (2, 660 + 2213)
    assert sorted(usage.by_model) == ["anthropic:claude-sonnet-4-5", "openai:gpt-4.1-mini"]


async def test_an_unknown_price_is_null_and_counted_as_unknown(
    app: App, server: ProviderServer
) -> None:
    @app.workflow(name="local")
    async def local(wf: Workflow) -> str:
        return (await wf.ai.generate_text("local:llama3", prompt="hi")).text

    await app.arun(local, workflow_id="l1")
    [call] = await app.alist_ai_calls("l1")
    assert call.cost_micro_usd is None and call.price_source is None
    usage = (await app.aget_record("l1")).usage
    assert usage is not None and usage.total.unknown_cost_calls == 1
    assert usage.total.cost_micro_usd == 0


async def test_rate_limits_are_retried_durably_after_retry_after(
    app: App, server: ProviderServer, clock: FakeClock
) -> None:
    server.fail_next(429, retry_after="0")
    server.fail_next(503)
    server.queue_chat("finally")

    @app.workflow(name="flaky")
    async def flaky(wf: Workflow) -> str:
        return (await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="x")).text

    assert (await app.arun(flaky, workflow_id="f1")).value == "finally"
    steps = (await app.aget_record("f1")).steps
    assert steps["ai.text:openai:gpt-4.1-mini"].attempts == 3
    calls = await app.alist_ai_calls("f1")
    assert [c.error is not None for c in calls] == [True, True, False]
    assert "429" in (calls[0].error or "")


async def test_generate_object_asks_again_with_the_error_and_logs_every_attempt(
    app: App, server: ProviderServer
) -> None:
    server.queue_chat('{"label": "bug"}')  # no confidence: invalid
    server.queue_chat('{"label": "bug", "confidence": 0.9}')

    @app.workflow(name="classify")
    async def classify(wf: Workflow, text: str) -> Verdict:
        res = await wf.ai.generate_object("openai:gpt-4.1-mini", Verdict, prompt=text)
        assert res.attempts == 2
        return res.object

    done = await app.arun(classify, "it crashes", workflow_id="c1")
    assert done.value == Verdict(label="bug", confidence=0.9)
    second = server.state.bodies[-1][1]
    assert "confidence" in second["messages"][-1]["content"]  # the error was sent back
    assert second["response_format"]["type"] == "json_schema"
    assert len(await app.alist_ai_calls("c1")) == 2


async def test_a_list_or_scalar_schema_is_asked_for_inside_an_object(
    app: App, server: ProviderServer
) -> None:
    # providers take an object at the top of a structured answer (OpenAI's
    # response_format, Anthropic's tool input): a list is asked for as {"value": [...]}
    server.queue_chat('{"value": [{"label": "bug", "confidence": 0.5}]}')
    server.queue_message("", tool_input={"value": "2026-12-03"})

    @app.workflow(name="several")
    async def several(wf: Workflow) -> tuple[list[Verdict], date]:
        many = await wf.ai.generate_object("openai:gpt-4.1-mini", list[Verdict], prompt="all")
        when = await wf.ai.generate_object("anthropic:claude-sonnet-4-5", date, prompt="when")
        return many.object, when.object

    done = await app.arun(several, workflow_id="w1")
    assert done.value == ([Verdict(label="bug", confidence=0.5)], date(2026, 12, 3))
    sent_openai = next(b for p, b in server.state.bodies if p.endswith("/chat/completions"))
    schema = sent_openai["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object" and schema["properties"]["value"]["type"] == "array"
    sent_anthropic = next(b for p, b in server.state.bodies if p.endswith("/messages"))
    assert sent_anthropic["tools"][-1]["input_schema"]["type"] == "object"


async def test_a_list_answered_bare_is_taken_and_a_wrong_answer_still_sent_back(
    app: App, server: ProviderServer
) -> None:
    """A server without structured outputs (an OpenAI-compatible one) answers a list as
    it is, not inside {"value": ...}: it was refused, each attempt billed, as "value:
    Input should be an object". An answer that fits neither is still sent back."""
    server.queue_chat('[{"label": "bug", "confidence": 0.5}]')
    server.queue_chat('{"labels": ["bug"]}')
    server.queue_chat('{"value": [{"label": "ok", "confidence": 1}]}')

    @app.workflow(name="bare-list")
    async def bare(wf: Workflow) -> tuple[list[Verdict], list[Verdict], int]:
        first = await wf.ai.generate_object("local:llama", list[Verdict], prompt="all")
        second = await wf.ai.generate_object("local:llama", list[Verdict], prompt="again")
        return first.object, second.object, second.attempts

    done = await app.arun(bare, workflow_id="bare-1")
    assert done.value == ([Verdict(label="bug", confidence=0.5)],
                          [Verdict(label="ok", confidence=1.0)], 2)  # fmt: skip
    sent_back = server.state.bodies[-1][1]["messages"][-1]["content"]
    assert sent_back.startswith("That answer does not match the schema: value:")


async def test_a_stop_string_is_one_stop_sequence_and_a_schema_without_json_schema_is_refused(
    app: App, server: ProviderServer
) -> None:
    from collections.abc import Callable

    class Holder(BaseModel):
        run: Callable[[], None]

    @app.workflow(name="stops")
    async def stops(wf: Workflow) -> str:
        await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="a", stop="END")
        await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="b", stop="END")
        with pytest.raises(tether.InvalidArgumentError, match="no JSON Schema"):
            await wf.ai.generate_object("openai:gpt-4.1-mini", Holder, prompt="c")
        return "ok"

    server.queue_chat("x")
    server.queue_message("y")
    assert (await app.arun(stops, workflow_id="s1")).value == "ok"
    sent = [b for _, b in server.state.bodies]
    assert sent[0]["stop"] == ["END"] and sent[1]["stop_sequences"] == ["END"]


BAD_ARGUMENTS = [
    ({"stop": 5}, r"stop: Input should be a valid list; pass a str or a list of str"),
    ({"options": [1]}, r"options: Input should be a valid dictionary; pass a dict"),
    ({"temperature": math.nan}, r"temperature: Input should be a finite number; pass a finite"),
    ({"temperature": 2.5}, r"temperature: Input should be less than or equal to 2"),
    ({"temperature": True}, r"temperature: .*not a bool"),
    ({"max_tokens": -5}, r"max_tokens: .*greater than or equal to 1; pass an integer >= 1"),
    ({"max_tokens": 0}, r"max_tokens: .*greater than or equal to 1"),
    ({"prompt": None, "messages": []}, r"messages: List should have at least 1 item.*; pass "),
    ({"prompt": None, "messages": 5}, r"messages: Input should be a valid list"),
    ({"prompt": 5}, r"prompt must be a str"),
]


@pytest.mark.parametrize(("bad", "says"), BAD_ARGUMENTS, ids=[str(b) for b, _ in BAD_ARGUMENTS])
async def test_bad_call_arguments_are_refused_before_any_provider_call(
    app: App, server: ProviderServer, bad: dict[str, object], says: str
) -> None:
    kwargs: dict[str, Any] = {"prompt": "x", **bad}
    takes_object = {"prompt", "messages", "temperature", "max_tokens", "options"}
    in_batch = {"prompt", "messages", "temperature", "max_tokens"}  # other keys: options

    @app.workflow(name="bad")
    async def bad_call(wf: Workflow) -> str:
        with pytest.raises(tether.InvalidArgumentError, match=says):
            await wf.ai.generate_text("openai:gpt-4.1-mini", **kwargs)
        if kwargs.keys() <= takes_object:
            with pytest.raises(tether.InvalidArgumentError, match=says):
                await wf.ai.generate_object("openai:gpt-4.1-mini", Verdict, **kwargs)
        if kwargs.keys() <= in_batch:
            with pytest.raises(tether.InvalidArgumentError, match="batch request 0: .*" + says):
                await wf.ai.batch("openai:gpt-4.1-mini", [{"custom_id": "a", **kwargs}])
        return "refused"

    assert (await app.arun(bad_call, workflow_id="bad")).value == "refused"
    assert server.count("POST /v1/") == 0
    assert await app.alist_ai_calls("bad") == []


NOT_TYPES = [
    ("Verdict", r"got the str 'Verdict': pass the class itself \(schema=Verdict\)"),
    (Verdict(label="x", confidence=0.5), r"got an instance .*: pass the class \(schema=Verdict\)"),
    ({"label": str}, r"got a dict .*: declare a pydantic model with those fields"),
    ([Verdict], r"got a list .*: for a list of X pass schema=list\[X\]"),
]


@pytest.mark.parametrize(("schema", "says"), NOT_TYPES, ids=["str", "instance", "dict", "list"])
async def test_a_schema_that_is_not_a_type_is_refused_saying_what_to_pass(
    app: App, server: ProviderServer, schema: object, says: str
) -> None:
    """Before, a class's name was taken as a forward reference (pydantic's "call
    `.rebuild()`"), and a dict, an instance or a list failed with pydantic's internals
    ("('type')", "arbitrary_types_allowed"): none said to pass the class."""

    @app.workflow(name="not-a-type")
    async def not_a_type(wf: Workflow) -> str:
        with pytest.raises(tether.InvalidArgumentError, match="schema must be a type, " + says):
            await wf.ai.generate_object("openai:gpt-4.1-mini", schema, prompt="x")  # type: ignore[arg-type]
        return "refused"

    assert (await app.arun(not_a_type, workflow_id="nt")).value == "refused"
    assert server.count("POST /v1/") == 0


async def test_a_batch_with_a_custom_id_used_twice_is_refused_naming_it(
    app: App, server: ProviderServer
) -> None:
    """Before, the error said only "custom_ids must be unique": not which one, nor
    which requests, in a batch of thousands built by code."""
    requests = [{"custom_id": f"t{i}", "prompt": "x"} for i in range(5)]
    requests.append({"custom_id": "t3", "prompt": "y"})

    @app.workflow(name="dup-ids")
    async def dup_ids(wf: Workflow) -> str:
        with pytest.raises(
            tether.InvalidArgumentError, match="requests 3 and 5 share custom_id 't3'"
        ):
            await wf.ai.batch("openai:gpt-4.1-mini", requests)
        return "refused"

    assert (await app.arun(dup_ids, workflow_id="dup")).value == "refused"
    assert server.count("POST /v1/") == 0


async def test_embed_refuses_options_that_are_not_a_dict(app: App, server: ProviderServer) -> None:
    @app.workflow(name="bad-embed")
    async def bad_embed(wf: Workflow) -> str:
        with pytest.raises(tether.InvalidArgumentError, match="options must be a dict"):
            await wf.ai.embed("openai:text-embedding-3-small", "a", options=[1])  # type: ignore[arg-type]
        with pytest.raises(tether.InvalidArgumentError, match="non-empty list of str"):
            await wf.ai.embed("openai:text-embedding-3-small", 5)  # type: ignore[arg-type]
        return "ok"

    assert (await app.arun(bad_embed, workflow_id="be")).value == "ok"
    assert server.count("POST /v1/") == 0


async def test_embeddings_are_recorded_with_their_tokens(app: App, server: ProviderServer) -> None:
    @app.workflow(name="embed")
    async def embed(wf: Workflow) -> list[list[float]]:
        return (await wf.ai.embed("openai:text-embedding-3-small", ["a b", "c"])).vectors

    assert (await app.arun(embed, workflow_id="e1")).value == [[3.0, 0.5, -0.5], [1.0, 0.5, -0.5]]
    [call] = await app.alist_ai_calls("e1")
    assert (call.call_type, call.input_tokens) == ("embed", 3)
    assert call.request_id is not None and call.request_id.startswith("req_")  # the server's
    assert call.cost_micro_usd == 0  # 3 tokens x $0.02 / MTok rounds to 0 micro-USD


# -- budgets ------------------------------------------------------------------------------------


async def test_a_budget_fails_the_run_naming_spend_and_limit(
    app: App, server: ProviderServer
) -> None:
    for _ in range(3):
        server.queue_chat("ok", prompt_tokens=1_000_000, completion_tokens=0)  # $0.40 each

    @app.workflow(name="spender", budget=ai.Budget(max_usd=0.70, warn_at=0.5))
    async def spender(wf: Workflow) -> int:
        for _ in range(3):
            await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="x")
        return 3

    with pytest.raises(ai.BudgetExceededError, match=r"this run has spent \$0\.8000 of \$0\.7000"):
        await app.arun(spender, workflow_id="b1")
    assert (await app.aget_run("b1")).status is RunStatus.FAILED
    assert server.count("POST /v1/chat/completions") == 2  # the third was never sent
    types = [e.type for e in (await app.aget_record("b1")).events]
    assert types.count("budget.warning") == 1


async def test_a_budget_asks_for_its_warning_only_past_the_warning_line(
    app: App, server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the line a check is one read of the sums; the run's events (which grow
    with the run) are scanned only once its spend has reached the warning line."""
    for _ in range(5):
        server.queue_chat("ok", prompt_tokens=1_000_000, completion_tokens=0)  # $0.40 each
    asked: list[float] = []
    warned = app.store.budget_warned

    async def counted(workflow_id: str, limits: Any = None) -> bool:
        spend = await app.store.ai_spend(workflow_id, None)
        asked.append(round(spend.usd, 2))
        return await warned(workflow_id, limits)

    monkeypatch.setattr(app.store, "budget_warned", counted)

    @app.workflow(name="careful", budget=ai.Budget(max_usd=2.0, warn_at=0.5))
    async def careful(wf: Workflow) -> int:
        for _ in range(5):
            await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="x")
        return 5

    assert (await app.arun(careful, workflow_id="w1")).value == 5
    # spend 0, 0.4, 0.8: not asked; at 1.2 asked, and the warning written with that call
    # is known from then on (parallel calls would otherwise each write one)
    assert asked == [1.2]
    types = [e.type for e in (await app.aget_record("w1")).events]
    assert types.count("budget.warning") == 1


async def test_a_shared_budget_key_sums_spend_over_runs(app: App, server: ProviderServer) -> None:
    for _ in range(2):
        server.queue_chat("ok", prompt_tokens=1_000_000, completion_tokens=0)

    @app.workflow(name="per-customer")
    async def per_customer(wf: Workflow) -> str:
        return (await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="x")).text

    budget = ai.Budget(max_usd=0.40, key="customer:42")
    assert (await app.arun(per_customer, workflow_id="k1", budget=budget)).value == "ok"
    with pytest.raises(ai.BudgetExceededError, match="budget key 'customer:42'"):
        await app.arun(per_customer, workflow_id="k2", budget=budget)  # k1 spent it all
    assert server.count("POST /v1/chat/completions") == 1
    calls = await app.alist_ai_calls("k1")
    assert [c.budget_key for c in calls] == ["customer:42"]


async def test_a_rerun_logs_the_calls_it_makes_beside_the_forgotten_ones(
    app: App, server: ProviderServer
) -> None:
    for answer in ("first", "second", "again"):
        server.queue_chat(answer, prompt_tokens=1_000_000, completion_tokens=0)  # $0.40 each

    @app.workflow(name="twice", budget=ai.Budget(max_usd=1.0))
    async def twice(wf: Workflow) -> str:
        first = await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="a")
        second = await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="b")
        return first.text + " " + second.text

    assert (await app.arun(twice, workflow_id="t1")).value == "first second"
    again = await app.arerun_from("t1", "ai.text:openai:gpt-4.1-mini#2")
    assert again.value == "first again"
    calls = await app.alist_ai_calls("t1")
    assert [c.response for c in calls if c.response and "again" in c.response]  # logged
    assert len(calls) == 3  # the forgotten call's row stays: it was spent
    usage = (await app.aget_record("t1")).usage
    assert usage is not None and usage.total.calls == 3
    assert usage.total.cost_usd == pytest.approx(1.2)
    server.queue_chat("over", prompt_tokens=1_000_000, completion_tokens=0)
    with pytest.raises(ai.BudgetExceededError) as stopped:
        await app.arerun_from("t1", "ai.text:openai:gpt-4.1-mini#2")  # $1.20 of $1.00 spent
    # a larger budget lets the failed run go on from the stopped call, which the error names
    failed_step = [k for k in (await app.aget_record("t1")).steps if k.startswith("ai.")][-1]
    assert f"app.rerun_from('t1', {failed_step!r}, budget=" in str(stopped.value)
    done = await app.arerun_from("t1", failed_step, budget={"max_usd": 5.0})
    assert done.value == "first over"
    assert server.count("POST /v1/chat/completions") == 4


async def test_a_budget_stop_inside_a_stage_names_the_steps_key_to_rerun_from(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(usage=ai.Usage(input_tokens=1000, output_tokens=1000))
    prices = ai.Prices({"fake:m": {"input_per_million": 100, "output_per_million": 100}})
    app = App(database_url, clock=clock, ai=ai.Providers(fake=fake, prices=prices))

    @tether.stage(id="many", input=Verdict, output=Verdict)
    async def many(ctx: tether.StageContext[Verdict, None]) -> Verdict:
        for i in range(5):
            await ctx.ai.generate_text("fake:m", prompt=str(i))  # $0.20 each
        return ctx.input

    budget = ai.Budget(max_usd=0.5)
    pipeline = tether.Pipeline("pb", input=Verdict, output=Verdict, budget=budget).pipe(many)
    app.register(pipeline)
    try:
        with pytest.raises(ai.BudgetExceededError) as stopped:
            await app.arun(pipeline, Verdict(label="a", confidence=1), workflow_id="pb")
        assert "app.rerun_from('pb', 'many/ai.text:fake:m#4', budget=" in str(stopped.value)
        done = await app.arerun_from("pb", "many/ai.text:fake:m#4", budget={"max_usd": 10})
        assert done.status is RunStatus.COMPLETED and len(fake.calls) == 5
    finally:
        await app.aclose()


async def test_one_raise_resumes_every_call_the_budget_stopped_at_once(
    app: App, server: ProviderServer
) -> None:
    for _ in range(6):
        server.queue_chat("ok", prompt_tokens=1_000_000, completion_tokens=0)  # $0.40 each

    @app.workflow(name="fan", budget=ai.Budget(max_usd=0.5, on_exceed="pause"))
    async def fan(wf: Workflow) -> int:
        async def item(i: int) -> int:
            for _ in range(2):
                await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=str(i))
            return i

        summary = await wf.for_each([1, 2, 3], item, max_parallel=3)
        return sum(r.value or 0 for r in summary.results)

    first = await app.arun(fan, workflow_id="f1")
    assert first.status is RunStatus.WAITING
    with pytest.raises(tether.InvalidArgumentError, match="new limits and nothing else"):
        await app.asignal("f1", "budget.raise", {"max_dollars": 5})  # refused, run untouched
    assert (await app.aget_run("f1")).status is RunStatus.WAITING
    assert await app.asignal("f1", "budget.raise", {"max_usd": 100}) is True
    done = await app.aresume("f1")
    assert done.value == 6  # one raise woke all three stopped branches


async def test_a_raise_without_valid_limits_is_recorded_and_the_run_waits_on(
    app: App, server: ProviderServer
) -> None:
    for _ in range(2):
        server.queue_chat("ok", prompt_tokens=1_000_000, completion_tokens=0)

    @app.workflow(name="paused", budget=ai.Budget(max_usd=0.3, on_exceed="pause"))
    async def paused(wf: Workflow) -> int:
        for _ in range(2):
            await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="x")
        return 2

    assert (await app.arun(paused, workflow_id="p1")).status is RunStatus.WAITING
    # a payload that reached the run without App.signal's check (another sender)
    await app.store.send_signal("p1", "budget.raise", '{"max_usd": -1}', at=app.clock.now(),
                                expires_at=None)  # fmt: skip
    assert (await app.aresume("p1")).status is RunStatus.WAITING  # still waiting, not failed
    refused = [e for e in (await app.aget_record("p1")).events if e.type == "budget.raise_refused"]
    assert len(refused) == 1
    await app.asignal("p1", "budget.raise", {"max_usd": 10})
    assert (await app.aresume("p1")).value == 2


# -- processes ------------------------------------------------------------------------------------

FLOWS = textwrap.dedent(
    """
    import os, time
    import tether
    from tether import ai

    class Hang:
        async def intercept(self, call, proceed):
            result = await proceed()  # the provider answered ...
            if os.environ.get("HANG") and call.name.startswith("ai."):
                open(os.environ["MARK"], "w").write("answered")
                time.sleep(3600)  # ... and the step is not recorded yet
            return result

    providers = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=os.environ["OPENAI_URL"]))
    app = tether.App(os.environ["DB"], ai=providers, interceptors=[Hang()], inline_wait=0)

    @app.workflow(name="ask", budget=ai.Budget(max_usd=0.5, on_exceed="pause"))
    async def ask(wf: tether.Workflow) -> list[str]:
        out = []
        for i in range(2):
            out.append((await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=f"q{i}")).text)
        return out

    @app.workflow(name="batched")
    async def batched(wf: tether.Workflow) -> dict:
        res = await wf.ai.batch("openai:gpt-4.1-mini", ["a", "b"], poll_every=0.2, max_wait=60)
        return {k: v.text for k, v in res.items.items()}
    """
)


@pytest.fixture
def flows(tmp_path: Path, database_url: str, server: ProviderServer) -> dict[str, str]:
    (tmp_path / "flows.py").write_text(FLOWS)
    return {
        **os.environ,
        "DB": database_url,
        "OPENAI_URL": server.openai_url,
        "MARK": str(tmp_path / "mark"),
        "PYTHONPATH": child_pythonpath(tmp_path),
    }


def _py(env: dict[str, str], code: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_kill_after_the_answer_repeats_that_one_call_and_records_it_once(
    flows: dict[str, str], server: ProviderServer
) -> None:
    server.queue_chat("one")
    server.queue_chat("one again")
    server.queue_chat("two")
    child = _py(flows, "import flows; flows.app.run(flows.ask, workflow_id='k1')", HANG="1")
    mark = Path(flows["MARK"])
    deadline = time.monotonic() + 60
    while not mark.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never got its answer"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    resumed = _py(flows, "import flows; print(flows.app.run(flows.ask, workflow_id='k1').value)")
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip() == "['one again', 'two']"
    assert server.count("POST /v1/chat/completions") == 3  # the first call, repeated once
    with App(flows["DB"]) as app:
        calls = app.list_ai_calls("k1")
    assert [c.response is not None for c in calls] == [True, True]  # recorded once each


def test_a_paused_budget_resumes_in_another_process_after_a_raise(
    flows: dict[str, str], server: ProviderServer
) -> None:
    server.queue_chat("first", prompt_tokens=2_000_000, completion_tokens=0)  # $0.80
    server.queue_chat("second")
    first = _py(flows, "import flows; print(flows.app.run(flows.ask, workflow_id='p1').status)")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out.strip() == "waiting"  # parked on budget.raise, the second call not sent
    assert server.count("POST /v1/chat/completions") == 1
    raised = _py(
        flows,
        "import flows; flows.app.signal('p1', 'budget.raise', {'max_usd': 5}); "
        "print(flows.app.result('p1', timeout=60).value)",
    )
    out, err = raised.communicate(timeout=90)
    assert raised.returncode == 0, err
    assert out.strip() == "['first', 'second']"
    assert server.count("POST /v1/chat/completions") == 2


def test_a_batch_is_polled_across_a_restart_and_its_results_recorded_once(
    flows: dict[str, str], server: ProviderServer
) -> None:
    server.queue_chat("A", prompt_tokens=1000, completion_tokens=10)
    server.queue_chat("B", prompt_tokens=1000, completion_tokens=10)
    first = _py(flows, "import flows; print(flows.app.run(flows.batched, workflow_id='bt').status)")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out.strip() == "waiting"  # submitted, polled once, parked on its timer
    assert server.count("POST /v1/batches") == 1
    server.finish_batches()
    time.sleep(0.3)  # the poll timer is due (real clock in the subprocess)
    second = _py(
        flows,
        "import flows; flows.app.fire_due_timers(); print(flows.app.result('bt', timeout=60).value)",
    )
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err
    assert out.strip() == "{'0': 'A', '1': 'B'}"
    assert server.count("POST /v1/batches") == 1  # never submitted twice
    with App(flows["DB"]) as app:
        calls = app.list_ai_calls("bt")
    assert sorted((c.custom_id, c.call_type) for c in calls) == [("0", "batch"), ("1", "batch")]
    assert all(c.cost_micro_usd == 208 for c in calls)  # (1000 x 0.40 + 10 x 1.60) / 2


async def test_cancelling_a_run_cancels_its_provider_batch(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = App(database_url, clock=clock, ai=_providers(server), inline_wait=0)

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> int:
        res = await wf.ai.batch("openai:gpt-4.1-mini", ["a", "b"], poll_every=60, max_wait=600)
        return len(res.items)

    parked = await app.arun(batched, workflow_id="cb")
    assert parked.status is RunStatus.WAITING
    [batch_id] = list(server.state.batches)
    assert await app.acancel("cb") == ["cb"]
    assert server.state.batches[batch_id]["status"] == "cancelled"
    assert server.count(f"POST /v1/batches/{batch_id}/cancel") == 1
    await app.aclose()


async def test_a_batch_past_max_wait_is_cancelled_and_fails_the_run(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = App(database_url, clock=clock, ai=_providers(server), inline_wait=0)

    @app.workflow(name="slow-batch")
    async def slow_batch(wf: Workflow) -> int:
        res = await wf.ai.batch("openai:gpt-4.1-mini", ["a"], poll_every=60, max_wait=120)
        return len(res.items)

    assert (await app.arun(slow_batch, workflow_id="sb")).status is RunStatus.WAITING

    async def polled(n: int) -> bool:  # n polls recorded, and the run parked again
        rec = await app.aget_record("sb")
        return (
            rec.status is not RunStatus.RUNNING
            and len([k for k in rec.steps if k.startswith("ai.batch:openai:gpt-4.1-mini.poll")])
            >= n
        )

    clock.advance(61)
    await app.afire_due_timers()
    await eventually(lambda: polled(2), timeout=10)  # the second poll: still pending
    clock.advance(61)
    await app.afire_due_timers()  # max_wait (two polls 60 s apart) is spent
    done = await app.aresult("sb", timeout=10)
    assert done.status is RunStatus.FAILED
    assert done.record.last_error is not None
    assert "did not finish within max_wait=120" in done.record.last_error.message
    [batch_id] = list(server.state.batches)
    assert server.state.batches[batch_id]["status"] == "cancelled"
    await app.aclose()


async def test_usage_of_a_run_with_its_children_and_by_filters(
    app: App, server: ProviderServer
) -> None:
    for _ in range(3):
        server.queue_chat("ok", prompt_tokens=1000, completion_tokens=0)  # 400 micro-USD each

    @app.workflow(name="leaf")
    async def leaf(wf: Workflow) -> str:
        return (await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="leaf")).text

    @app.workflow(name="parent")
    async def parent(wf: Workflow) -> str:
        await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="parent")
        await wf.child(leaf)
        return await wf.child(leaf)

    assert (await app.arun(parent, workflow_id="p")).value == "ok"
    [own] = await app.ausage(run="p")
    [family] = await app.ausage(run="p", children=True)
    assert (own.calls, own.cost_micro_usd) == (1, 400)
    assert (family.calls, family.cost_micro_usd) == (3, 1200)
    by_workflow = {r.group: r.calls for r in await app.ausage(group_by="workflow")}
    assert by_workflow == {"leaf": 2, "parent": 1}
    assert len(await app.alist_ai_calls("p", children=True)) == 3
    created = (await app.aget_run("p")).created_at
    [before] = await app.ausage(until=created - timedelta(seconds=1))
    [after] = await app.ausage(since=created - timedelta(seconds=1))
    assert (before.calls, after.calls) == (0, 3)
    with pytest.raises(tether.InvalidArgumentError, match="group_by"):
        await app.ausage(group_by="hour")
