"""Engine control flow that unwinds workflow code (not errors)."""

from __future__ import annotations

__all__ = ["Suspend"]


class Suspend(BaseException):
    """Unwinds a workflow that must wait; the engine parks the run.

    A BaseException so that a user's ``except Exception`` cannot swallow it.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"waiting on {key!r}")
