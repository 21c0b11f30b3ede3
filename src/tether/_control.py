"""Engine control flow that unwinds workflow code (not errors)."""

from __future__ import annotations

from datetime import datetime

__all__ = ["HandBack", "StepExited", "Suspend"]


class Suspend(BaseException):
    """Unwinds a workflow that must wait; the engine parks the run.

    A BaseException so that a user's ``except Exception`` cannot swallow it.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"waiting on {key!r}")


class HandBack(Suspend):
    """Unwinds a workflow at a step boundary because its process is shutting down, or
    because a worker's run waits out a long retry back-off (`not_before`: when its
    step's next attempt is due), which holds none of the worker's slots.

    The engine hands the run back (runnable at once by the next process or
    worker; a worker's job from `not_before`) instead of starting another step.
    A `Suspend`, so that `for_each` lets its running items reach their own
    boundaries before unwinding.
    """

    def __init__(self, not_before: datetime | None = None) -> None:
        self.not_before = not_before
        super().__init__("shutdown" if not_before is None else "retry back-off")


class StepExited(BaseException):
    """A step function, or the workflow's own code between steps (`step` None), raised
    KeyboardInterrupt or SystemExit (`exit`, also the ``__cause__``): the process is
    being asked to stop, not the step to fail. Neither retried nor recorded as a
    failure: a step's attempt is left interrupted, to run again when the run is resumed
    (within `RetryPolicy.interrupted_reruns`), and this reaches the caller of
    `app.arun` in its place; `app.run`, the sync facade, raises the exit itself, so a
    script's ``sys.exit(3)`` in a step exits with 3. Raised as itself it ended the
    event loop under the run (asyncio lets neither pass a task), and `app.run` waited
    for good, deaf to SIGTERM. A BaseException, so that a workflow's
    ``except Exception`` does not swallow it."""

    def __init__(self, step: str | None, exit: KeyboardInterrupt | SystemExit) -> None:
        self.step = step
        self.exit = exit
        where = "the workflow's code" if step is None else f"step {step!r}"
        left = "" if step is None else ", its attempt left interrupted (not failed, not retried)"
        fail = "the run" if step is None else "the step"
        super().__init__(
            f"{where} raised {exit!r}: the run stopped there{left}; it goes on from its "
            "last recorded step when the run is resumed (app.resume or app.run with its "
            f"workflow_id). To fail {fail} instead, raise an ordinary exception"
        )
