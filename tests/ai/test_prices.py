"""The user's price table: a batch call takes the price's own discount, else the table's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tether import App, FakeClock, InvalidArgumentError, Workflow, ai
from tether.ai import Price, Prices, Usage

from ._server import ProviderServer

AT = datetime(2026, 6, 1, tzinfo=UTC)
MILLION_IN = Usage(input_tokens=1_000_000)  # $1.00 at $1 / MTok
DOLLAR = {"input_per_million": 1.0, "output_per_million": 1.0}


def _micro(prices: Prices, model: str, *, batch: bool) -> int | None:
    return (
        ai.Providers(fake=ai.FakeModel(), prices=prices)
        .price("fake", model, MILLION_IN, at=AT, batch=batch)
        .micro_usd
    )


def test_a_batch_call_takes_the_tables_discount_unless_the_price_sets_its_own() -> None:
    own = Price(input_per_million=1.0, output_per_million=1.0, batch_discount=0.25)
    table = Prices({"fake:m": DOLLAR, "fake:own": own}, batch_discount=0.0)
    assert _micro(table, "m", batch=True) == 1_000_000  # the table's: none off
    assert _micro(table, "own", batch=True) == 750_000  # its own: a quarter off
    assert _micro(table, "m", batch=False) == 1_000_000
    assert _micro(Prices({"fake:m": DOLLAR}), "m", batch=True) == 500_000  # the default: half


def test_the_price_source_names_the_discount_in_force() -> None:
    at_half = Prices({"fake:m": DOLLAR}).price("fake", "m", MILLION_IN, at=AT)
    set_half = Prices({"fake:m": Price(**DOLLAR, batch_discount=0.5)}).price(
        "fake", "m", MILLION_IN, at=AT
    )
    at_none = Prices({"fake:m": DOLLAR}, batch_discount=0.0).price("fake", "m", MILLION_IN, at=AT)
    assert at_half.source == set_half.source  # as recorded before a table could set it
    assert at_none.source != at_half.source


async def test_a_batch_is_charged_at_the_tables_discount(database_url: str) -> None:
    fake = ai.FakeModel(usage=MILLION_IN)
    prices = Prices({"fake:m": DOLLAR}, batch_discount=0.0)
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(fake=fake, prices=prices))

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> list[float | None]:
        text = await wf.ai.generate_text("fake:m", prompt="x")
        batch = await wf.ai.batch("fake:m", ["x"], poll_every=1)
        return [text.cost_usd, batch.cost_usd]

    try:
        assert (await app.arun(batched, workflow_id="b")).value == [1.0, 1.0]
    finally:
        await app.aclose()


@pytest.mark.parametrize("price", [float("inf"), "1e400", float("nan")])
def test_a_price_that_is_no_finite_number_is_refused_when_the_table_is_built(
    price: float | str,
) -> None:
    """An infinite price (a config's "1e400") was taken; every call to the model then
    failed after the provider answered, and billed, with `decimal.InvalidOperation`,
    its call not logged."""
    with pytest.raises(InvalidArgumentError, match=r"price of 'fake:m' is not valid \("):
        Prices({"fake:m": {"input_per_million": 1.0, "output_per_million": price}})
    with pytest.raises(InvalidArgumentError, match="cached_input_per_million: Input should be"):
        Prices({"fake:m": {**DOLLAR, "cached_input_per_million": price}})


async def test_a_price_id_genai_prices_knows_prices_an_openai_compatible_call(
    database_url: str, server: ProviderServer
) -> None:
    """``OpenAICompatible(price_id="openrouter")`` is documented to take genai-prices'
    prices; only six providers were asked, so an OpenRouter call was priced unknown
    ($0 in every total) though genai-prices has OpenRouter's price of the model."""
    server.queue_chat("hi", prompt_tokens=1000, completion_tokens=100)
    router = ai.OpenAICompatible(base_url=server.openai_url, price_id="openrouter")
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(router=router))

    @app.workflow(name="routed")
    async def routed(wf: Workflow) -> float | None:
        return (await wf.ai.generate_text("router:openai/gpt-4.1-mini", prompt="x")).cost_usd

    try:
        done = await app.arun(routed, workflow_id="r")
        [call] = await app.alist_ai_calls("r")
    finally:
        await app.aclose()
    # OpenRouter's gpt-4.1-mini: $0.40 / MTok input, $1.60 output
    assert call.cost_micro_usd == 1000 * 0.40 + 100 * 1.60  # 560
    assert done.value == 0.00056 and (call.price_source or "").startswith("genai-prices@")


def test_a_misspelt_price_field_is_named_beside_the_one_it_was_meant_to_be() -> None:
    """Before, only the first error was said, "input_per_million: Field required", for
    a table that had it, misspelt: the misspelling itself was never named."""
    with pytest.raises(InvalidArgumentError, match="input_per_millions: Extra inputs"):
        Prices({"fake:m": {"input_per_millions": 0.4, "output_per_million": 1.6}})


@pytest.mark.parametrize("discount", ["0.5", True, None])
def test_a_table_discount_that_is_no_number_is_refused_saying_so(discount: object) -> None:
    """`Prices(batch_discount="0.5")` (read from a config) raised a bare TypeError, and
    `True` was taken as a discount of 1: every batch call free."""
    with pytest.raises(InvalidArgumentError, match="batch_discount must be a number in"):
        Prices(batch_discount=discount)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_discount", True), ("input_per_million", True), ("output_per_million", False),
     ("cached_input_per_million", True), ("web_search_per_thousand", True),
     ("input_per_million", "0.4")],
)  # fmt: skip
def test_a_price_that_is_no_number_is_refused_not_read_as_one(field: str, value: object) -> None:
    """Pydantic's lax mode read `batch_discount=True` as 1.0 (every batch call free) and
    `input_per_million=True` as $1 / MTok; ints and floats are still prices."""
    given = {**DOLLAR, field: value}
    with pytest.raises(ValidationError, match=f"{field}\n  Input should be a valid number"):
        Price(**given)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=f"{field}: Input should be a valid number"):
        Prices({"fake:m": given})  # type: ignore[dict-item]
    whole = Price(input_per_million=2, output_per_million=1, batch_discount=0)
    assert (whole.input_per_million, whole.batch_discount) == (2.0, 0.0)
