"""Typed stages and pipelines (`tether.stage`, `tether.Pipeline`), built on durable steps.

A pipeline is a workflow: each stage's output is recorded once and never
recomputed; async-batch stages park the run on a durable timer between
checks; `App.rerun_from(run_id, stage_id)` runs a finished run again from a
stage. See `_execute` for how a stage maps onto steps.
"""

from ._context import Artifacts, StageContext
from ._errors import PipelineError, StageError, StageFailedError, StageTimeoutError
from ._outcomes import Failed, NotReady, Ready, Suspend
from ._pipeline import Pipeline
from ._presets import AIConfig, ConcurrencyConfig, DebugConfig, FeatureFlags, StandardConfig
from ._run_input import PipelineRun
from ._stage import Stage, batch_stage, stage

__all__ = [
    "AIConfig",
    "Artifacts",
    "ConcurrencyConfig",
    "DebugConfig",
    "Failed",
    "FeatureFlags",
    "NotReady",
    "Pipeline",
    "PipelineError",
    "PipelineRun",
    "Ready",
    "Stage",
    "StageContext",
    "StageError",
    "StageFailedError",
    "StageTimeoutError",
    "StandardConfig",
    "Suspend",
    "batch_stage",
    "stage",
]
