"""Errors of the stage layer (part of the `tether.TetherError` tree)."""

from __future__ import annotations

from ..errors import InvalidArgumentError, TetherError

__all__ = ["PipelineError", "StageError", "StageFailedError", "StageTimeoutError"]


class PipelineError(InvalidArgumentError):
    """A pipeline that cannot run as built (caught when it is built, not at run time)."""


class StageError(TetherError):
    """A stage could not produce its output (the message names the stage)."""


class StageFailedError(StageError):
    """A batch stage's check answered `Failed`."""


class StageTimeoutError(StageError, TimeoutError):
    """A batch stage was still not ready after its `max_wait`."""
