"""`generate_object` with a schema whose class name is not ASCII (a harness written
in French or German names its models so), against the real local server."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer


class Réponse(BaseModel):
    étiquette: str


@pytest.mark.parametrize(
    "model", ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5"], ids=["openai", "anthropic"]
)
async def test_a_schema_named_in_accented_letters_is_asked_under_a_name_providers_take(
    database_url: str, clock: FakeClock, server: ProviderServer, model: str
) -> None:
    """Before, the schema was sent named 'Réponse': OpenAI refuses a response_format
    name outside ^[a-zA-Z0-9_-]+$ and Anthropic a tool name outside its own pattern,
    both with a 400, so every such call failed the run, whatever the prompt."""
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )
    app = App(database_url, clock=clock, ai=providers)

    @app.workflow(name="classer")
    async def classer(wf: Workflow) -> str:
        got = await wf.ai.generate_object(model, Réponse, prompt="trie")
        return got.object.étiquette

    server.queue_chat('{"étiquette": "bogue"}')
    server.queue_message("", tool_input={"étiquette": "bogue"})
    done = await app.arun(classer, workflow_id="r")
    assert done.value == "bogue"
    sent = server.state.bodies[-1][1]
    name = (
        sent["response_format"]["json_schema"]["name"]
        if "openai" in model
        else (sent["tool_choice"]["name"])
    )
    assert name == "R_ponse"
    await app.aclose()
