"""The chaos cancel mode: which runs are cancelled when, and what a cancel promises.

While workers are SIGKILLed and restarted (and, on PostgreSQL, connections
dropped), the canceller process (`_canceller.py`) cancels a share of the runs:
half of them while their long async step awaits, the others just after a random
step of theirs started or at a random moment (often still queued). A cancel from
another process reaches the worker driving the run at its next claim renewal,
every third of the owner lease at the most (`ChaosConfig.cancel_reach` allows two
renewals, one lost to a dropped connection, and a margin for a busy machine).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ._canceller import Cancel, Planned
from ._flows import Execution, Mark, is_async, step_names

HOLD = 0.5  # share of the cancelled runs cancelled while their long step awaits
HOLD_AFTER = 0.3  # at most this long after it started


@dataclass(frozen=True)
class Cancels:
    """What the checks of the cancel mode read, besides tether's records and the
    executions in the ledger."""

    plan: list[Planned]
    made: dict[str, Cancel]  # by run id, as the canceller wrote them down
    marks: dict[str, Mark]  # how executions of async steps ended, by their uuid
    reach: float  # `ChaosConfig.cancel_reach`

    def cancelled(self, wid: str) -> Cancel | None:
        """The cancel that cancelled run `wid` (None: not cancelled, or it ended first)."""
        made = self.made.get(wid)
        return made if made is not None and made.outcome == "cancelled" else None


def plan_cancels(
    rng: random.Random,
    specs: dict[str, dict[str, Any]],
    share: float,
    long_share: float,
    long: tuple[float, float],
) -> list[Planned]:
    """Give every run ledger marks, some a long step, and draw the cancels to make.

    A run cancelled while its long step awaits always has one; other runs have one
    with probability `long_share`, to keep workers busy with steps a kill cuts."""
    if not 0 <= share <= 1 or not 0 <= long_share <= 1:
        raise ValueError(f"cancel and long shares must be within [0, 1]: {share}, {long_share}")
    targets = rng.sample(list(specs), round(share * len(specs)))
    holds = set(targets[: round(HOLD * len(targets))])
    plan = []
    for wid, spec in specs.items():
        spec["marks"] = True
        if wid in holds or rng.random() < long_share:
            spec["long"] = round(rng.uniform(*long), 3)
        if wid in holds:
            plan.append(Planned(wid, "long", round(rng.uniform(0.05, HOLD_AFTER), 3)))
        elif wid in targets and rng.random() < 0.3:
            plan.append(Planned(wid, "", round(rng.uniform(0.0, 2.0), 3)))
        elif wid in targets:
            plan.append(Planned(wid, rng.choice(step_names(spec)), round(rng.uniform(0, 0.05), 3)))
    return plan


def check_cancelled_step(
    wid: str,
    name: str,
    step: Any,
    runs: list[Execution],
    marks: dict[str, Mark],
    killed: dict[int, float],
    cancel: Cancel,
    reach: float,
) -> list[str]:
    """The promises of a cancel acknowledged at `cancel.acked`, for one step of its run.

    5. nothing of the run is kept or started after the cancel: no completion is
       recorded after it, no execution starts once the cancel has reached the
       driver (`reach` seconds later);
    6. an async execution still running when it was acknowledged ends (returns,
       or is stopped and writes its "stopped" mark) within `reach`, unless its
       process was SIGKILLed; one stopped by the cancel is recorded failed by it.
    """
    out: list[str] = []
    where, late = f"{wid}/{name}", cancel.acked + reach
    said = f"cancel acknowledged at {cancel.acked:.6f}"
    kept = step is not None and step.status.value == "completed" and step.completed_at is not None
    if kept and step.completed_at.timestamp() > cancel.acked:
        at = step.completed_at.timestamp()
        out.append(f"[5 kept after the cancel] {where} recorded completed at {at:.6f}, {said}")
    for e in runs:
        if e.started > late:
            out.append(
                f"[5 started after the cancel] {where} pid {e.pid} at {e.started:.6f}, {said}"
            )
        if not is_async(name):
            continue  # a sync step's thread cannot be stopped: it runs on
        mark = marks.get(e.id)
        if mark is not None and mark.at <= cancel.acked:
            continue  # it had ended before
        cut = killed.get(e.pid)
        if mark is None and (cut is None or cut < e.started):
            out.append(
                f"[6 not stopped] {where} pid {e.pid} started at {e.started:.6f} neither "
                f"returned nor was stopped after the {said}, and its process was not SIGKILLed"
            )
        elif mark is not None and mark.at > late:
            what = "completed" if mark.mark == "done" else "stopped late"
            out.append(
                f"[6 {what} after the cancel] {where} pid {e.pid} ({mark.mark} at "
                f"{mark.at:.6f}), {said}: the cancel should reach it within {reach:g}s"
            )
        if mark is not None and mark.mark == "stopped" and (cut is None or cut < mark.at):
            out += _recorded_by_cancel(where, step)
    return out


def _recorded_by_cancel(where: str, step: Any) -> list[str]:
    """A step stopped by the cancel, its process alive, is recorded failed by the cancel."""
    error = None if step is None else step.error
    if (
        step is not None
        and step.status.value == "failed"
        and error
        and "by the cancel" in error.message
    ):
        return []
    state = "missing" if step is None else f"{step.status.value} ({error and error.message})"
    return [f"[6 stop not recorded] {where} was stopped by the cancel but is recorded {state}"]
