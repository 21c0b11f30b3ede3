"""`PipelineRun`: what a pipeline run records as its input."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["PipelineRun"]


class PipelineRun(BaseModel):
    """A pipeline run's input at rest: the pipeline's input and each stage's config
    (validated, defaults filled in), so a resumed or rerun run uses what it began with."""

    pipeline: str
    input: Any = None
    config: dict[str, dict[str, Any]] = {}
