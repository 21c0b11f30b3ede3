"""What a run about to be cancelled has out at providers that this App cannot stop.

A cancel reaches a provider batch only through the App's providers (`wf.ai.batch`)
or the pipeline's batch stage (`cancel=`); an App without them would cancel the
run and leave the batch running, billed, with no record left to reach it by.
"""

from __future__ import annotations

from collections.abc import Mapping

from .ai import Providers, open_batches
from .definition import WorkflowDef
from .stages import Pipeline
from .stages.host import suspended_batches
from .store import Store

__all__ = ["unreachable_batches"]


async def unreachable_batches(
    store: Store,
    providers: Providers | None,
    registry: Mapping[str, WorkflowDef],
    workflow_id: str,
) -> list[str]:
    """The batches the run and its unfinished descendants have out that this App
    cannot cancel, each named for the error message. A batch stage registered
    without `cancel=` counts as reached: its pipeline chose to leave it running."""
    found: list[str] = []
    reachable = set(providers.names) if providers is not None else set()
    todo = [workflow_id]
    while todo:
        wid = todo.pop()
        run = await store.get_run(wid)
        if run is None or run.status.terminal:
            continue
        for batch_id, provider in (await open_batches(store, wid)).items():
            if provider not in reachable:
                found.append(f"{provider} batch {batch_id!r}")
        defn = registry.get(run.workflow_name)
        pipeline = defn.fn if defn is not None and isinstance(defn.fn, Pipeline) else None
        for sus in await suspended_batches(store, wid):
            # (a stage without `cancel=` is reached: its pipeline leaves it running)
            if sus.stage(pipeline, run.workflow_name) is None:
                found.append(f"batch stage {sus.name!r}")
        todo += await store.child_runs(wid)
    return found
