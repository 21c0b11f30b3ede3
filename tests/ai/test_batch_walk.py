"""`wf.ai.batch` walked as a new user would, against the local server speaking
OpenAI's and Anthropic's batch formats (time is a fake clock)."""

from __future__ import annotations

import pytest

from tether import FakeClock, RunStatus, Workflow, ai
from tether.errors import InvalidArgumentError

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended

CHINESE = "中文提示"  # 3 bytes a character in UTF-8, 6 as a JSON escape


def test_a_batch_of_non_ascii_text_past_the_limit_in_bytes_is_refused() -> None:
    """Before, the size was counted in characters: 70 M characters of Chinese text
    (210 MB as sent) passed OpenAI's 200 MB, the file was uploaded, and OpenAI failed
    the batch at validation a poll later."""
    request = ai.TextRequest(messages=[ai.Message(role="user", content=CHINESE * 17_500_000)])
    items = [ai.BatchItem(custom_id="0", request=request)]
    with pytest.raises(InvalidArgumentError, match=r"are 210 MB of JSON, more than OpenAI"):
        ai.OpenAI(api_key="k").batch_check(items)


async def test_an_openai_batch_file_is_as_large_as_counted(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """Before, each non-ASCII character went up as a 6-byte escape (\\u4e2d): the file
    was twice what the same text is in UTF-8, past what `batch_check` counted, and the
    prompt the server read back still had to be the one asked."""
    app = _app(database_url, clock, server)
    prompt = CHINESE * 1000

    @app.workflow(name="zh")
    async def zh(wf: Workflow) -> str | None:
        res = await wf.ai.batch(MODELS["openai"], [prompt], poll_every=60)
        return res.items["0"].text

    assert (await app.arun(zh, workflow_id="zh")).status is RunStatus.WAITING
    [batch] = server.state.batches.values()
    upload = server.state.files[batch["input_file_id"]]
    assert len(upload) < len(prompt.encode()) + 300  # UTF-8, a line's framing around it
    server.finish_batches()
    done = await _ended(app, clock, "zh", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == f"echo: {prompt}"
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_results_refused_for_good_name_the_batch_and_the_step_that_fetches_them(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """Before, the run failed with the provider's words alone ("OpenAI answered 404:
    not found: 'file_0008'"): not which batch, nor that its completed requests were
    billed and not recorded, nor how to fetch them once the provider hands them over."""
    app = _app(database_url, clock, server)

    @app.workflow(name="two")
    async def two(wf: Workflow) -> list[str | None]:
        res = await wf.ai.batch(MODELS[provider], ["a", "b"], poll_every=60)
        return [item.text for item in res.items.values()]

    assert (await app.arun(two, workflow_id="gone")).status is RunStatus.WAITING
    server.finish_batches()
    server.fail_next(404, method="GET", path=r"/content$|/results$")
    done = await _ended(app, clock, "gone", 60)
    assert done.status is RunStatus.FAILED
    assert done.record.last_error is not None
    said = done.record.last_error.message
    [batch_id] = [*server.state.batches, *server.state.anthropic_batches]
    assert f"batch {batch_id} at {provider} ({MODELS[provider]}) ended, but" in said, said
    assert "the requests it completed (billed) are not in the call log" in said
    step = f"ai.batch:{MODELS[provider]}.results"
    assert f"app.rerun_from('gone', {step!r})" in said
    assert await app.alist_ai_calls("gone") == []
    await app.arerun_from("gone", step)  # as the error says: the results are recorded
    again = await app.aresult("gone", timeout=10)
    assert again.status is RunStatus.COMPLETED, again.record.last_error
    assert len(again.value) == 2 and all(again.value)
    assert len(await app.alist_ai_calls("gone")) == 2
    await app.aclose()
