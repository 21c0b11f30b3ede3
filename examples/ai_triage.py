"""Triage support tickets with model calls that are durable, priced and budgeted.

Runs offline: `ai.FakeModel` answers from a script, with usage, and the price
table prices it. Swap in `ai.OpenAI()` / `ai.Anthropic()` and real model
names to call the real APIs; nothing else changes.

    .venv/bin/python examples/ai_triage.py

Run it twice: the second run answers every call from the record (no model is
called), and the totals stay the same, because they are sums over the call
log, not counters.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

import tether
from tether import ai

DB = Path(__file__).resolve().parent.parent / ".tether" / "ai_triage.db"


class Verdict(BaseModel):
    label: str
    urgent: bool


TICKETS = [
    "The nightly export crashed with an out-of-memory error.",
    "How do I change the invoice address?",
    "Login fails for every user since 09:00.",
]

SCRIPT = [
    '{"label": "bug"}',  # missing "urgent": sent back with the error, answered again
    '{"label": "bug", "urgent": true}',
    "Raise the worker's memory limit and rerun the export.",
    '{"label": "question", "urgent": false}',
    "Settings -> Billing -> Address.",
    '{"label": "outage", "urgent": true}',
    "Roll back the 08:55 deploy of the auth service.",
]

model = ai.FakeModel(SCRIPT)
prices = ai.Prices({"demo:small": {"input_per_million": 0.40, "output_per_million": 1.60}})
DB.parent.mkdir(exist_ok=True)
app = tether.App(f"sqlite:///{DB}", ai=ai.Providers(demo=model, prices=prices))


@app.workflow(name="triage", budget=ai.Budget(max_usd=0.01, warn_at=0.8))
async def triage(wf: tether.Workflow, tickets: list[str]) -> list[str]:
    answers = []
    for ticket in tickets:
        verdict = await wf.ai.generate_object("demo:small", Verdict, prompt=ticket)
        reply = await wf.ai.generate_text(
            "demo:small", prompt=ticket, system="Answer in one sentence.", max_tokens=100
        )
        mark = "URGENT " if verdict.object.urgent else ""
        answers.append(f"{mark}[{verdict.object.label}] {reply.text}")
    return answers


def main() -> int:
    done = app.run(triage, TICKETS, workflow_id="triage-demo")
    for line in done.value:
        print(" ", line)
    usage = done.record.usage
    assert usage is not None
    total = usage.total
    print(
        f"{total.calls} model calls ({len(model.calls)} made by this process), "
        f"{total.input_tokens} input and {total.output_tokens} output tokens, "
        f"${total.cost_usd:.6f} of a $0.01 budget"
    )
    print("see them: tether usage --db", f"sqlite:///{DB}")
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
