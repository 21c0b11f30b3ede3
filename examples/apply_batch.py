"""The apply-batch flow: a bot applies to jobs through a (simulated) agent adapter.

    python examples/apply_batch.py           # run it; run it again: nothing is re-applied
    python examples/apply_batch.py --fresh   # a new run under a new id
    tether run examples/apply_batch.py:apply_batch --id batch-1 --input @jobs.json

What tether guarantees here, whatever crashes in between:
- each application is one step with an idempotency key: done once, never twice;
- two jobs at the same company and role never run at once (mutex key);
- at most two applications in flight (max_parallel);
- the adapter's transient failures are retried with back-off;
- a heartbeat and a lease say who works on the batch and whether it is alive.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import uuid

from pydantic import BaseModel

import tether


class Job(BaseModel):
    company: str
    role: str


class Outcome(BaseModel):
    outcome: str
    company: str
    role: str
    attempt: int


JOBS = [
    Job(company="Anthropic", role="Staff Engineer"),
    Job(company="OpenAI", role="Member of Technical Staff"),
    Job(company="Anthropic", role="Staff Engineer"),  # a duplicate: answered from the record
    Job(company="DeepMind", role="Research Engineer"),
    Job(company="Mistral", role="Platform Engineer"),
]

app = tether.App()  # $TETHER_DATABASE_URL, else .tether/tether.db in the working directory
adapter_calls = 0  # how often the agent was really asked, in this process
adapter_retries = 0  # of those, attempts after a dropped session


async def apply_with_agent(job: Job, ctx: tether.StepContext) -> Outcome:
    """The simulated agent adapter: a few ms of work, and a flaky first attempt now and then."""
    global adapter_calls, adapter_retries
    adapter_calls += 1
    adapter_retries += ctx.attempt > 1
    await asyncio.sleep(random.uniform(0.002, 0.01))
    if ctx.attempt == 1 and random.random() < 0.3:
        raise ConnectionError(f"browser session for {job.company} dropped")
    return Outcome(outcome="APPLIED", company=job.company, role=job.role, attempt=ctx.attempt)


@app.workflow(name="apply-batch", version="1")
async def apply_batch(wf: tether.Workflow, jobs: list[Job] | None = None) -> dict[str, int]:
    """Apply to every job once; the input defaults to the demo's job list."""
    todo = JOBS if jobs is None else jobs
    await wf.touch_lease("batch-slot", holder="apply-bot", ttl=300)
    await wf.step("cleanup-browser", lambda: {"ok": True})

    async def apply(job: Job) -> Outcome:
        await wf.heartbeat("apply-bot", {"company": job.company, "role": job.role})
        return await wf.step(
            "apply",  # one step per key: recorded as apply@Company:Role
            lambda ctx: apply_with_agent(job, ctx),
            idempotency_key=f"{job.company}:{job.role}",
            retry=tether.RetryPolicy(attempts=4, backoff=0.02),
            result_type=Outcome,  # an Outcome on replay in any process, whatever loaded this file
        )

    summary = await wf.for_each(
        todo, apply, max_parallel=2, mutex_key=lambda j: f"{j.company}:{j.role}"
    )
    # a job listed twice is one application: its second item is answered from the record
    applied = len({(o.company, o.role) for o in summary.values if o is not None})
    counts = {
        "applied": applied,
        "duplicates": summary.fulfilled - applied,
        "failed": summary.rejected,
    }
    await wf.update_state(lambda state: {**(state or {}), **counts})
    await wf.release_lease("batch-slot", holder="apply-bot")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply to a batch of jobs, durably.")
    parser.add_argument("--fresh", action="store_true", help="start a new run (a new id)")
    run_id = (
        f"apply-batch-{uuid.uuid4().hex[:6]}" if parser.parse_args().fresh else "apply-batch-demo"
    )
    try:
        result = app.run(apply_batch, workflow_id=run_id, initial_state={"applied": 0, "failed": 0})
    except KeyboardInterrupt:
        resume = f"tether run examples/apply_batch.py:apply_batch --id {run_id}"
        print(f"interrupted: run {run_id} is kept; `{resume}` resumes it", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        app.close()
    record = result.record
    print(f"run {run_id}: {record.status.value}, result {result.value}, state {record.state}")
    distinct = list(dict.fromkeys(f"apply@{j.company}:{j.role}" for j in JOBS))
    for name in distinct:
        step = record.steps[name]
        print(f"  {name:<42} {step.result['outcome']} after {step.attempts} attempt(s)")
    print(f"{len(JOBS)} jobs, {len(distinct)} distinct: the duplicate was answered from the record")
    retries = "retry" if adapter_retries == 1 else "retries"
    retried = f" (including {adapter_retries} {retries})" if adapter_retries else ""
    print(f"agent adapter calls in this process: {adapter_calls}{retried}")
    if adapter_calls == 0:
        print("every application came from the record: nothing was applied twice")
    else:
        print("run it again: completed applications come from the record, none is repeated")
    print(f"inspect it: tether runs show {run_id}")


if __name__ == "__main__":
    main()
