"""Engine control flow that unwinds workflow code (not errors)."""

from __future__ import annotations

__all__ = ["HandBack", "Suspend"]


class Suspend(BaseException):
    """Unwinds a workflow that must wait; the engine parks the run.

    A BaseException so that a user's ``except Exception`` cannot swallow it.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"waiting on {key!r}")


class HandBack(Suspend):
    """Unwinds a workflow at a step boundary because its process is shutting down.

    The engine hands the run back (runnable at once by the next process or
    worker) instead of starting another step. A `Suspend`, so that `for_each`
    lets its running items reach their own boundaries before unwinding.
    """

    def __init__(self) -> None:
        super().__init__("shutdown")
