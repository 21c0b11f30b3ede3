"""The public surface is pinned: an accidental change to it fails here."""

from __future__ import annotations

import tether
import tether.errors

EXPECTED = {
    "BatchesOutError",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "WaitStatus",
    "WaitInfo",
    "WaitKind",
    "RunInfo",
    "WorkflowVersionError",
    "WorkflowTimeoutError",
    "WaitPayloadError",
    "WaitTimeout",
    "WebhookSignatureError",
    "TokenCompletedError",
    "TokenNotFoundError",
    "RunFinishedError",
    "RunAlreadyRunningError",
    "RunCancelledError",
    "RunFailedError",
    "ChildRunError",
    "App",
    "AsyncClient",
    "Client",
    "Clock",
    "Durability",
    "EndReason",
    "ErrorRecord",
    "EventRecord",
    "FakeClock",
    "ForEachError",
    "ForEachSummary",
    "HeartbeatRecord",
    "IncompatibleStoreError",
    "InvalidArgumentError",
    "ItemResult",
    "ItemStatus",
    "LeaseConflictError",
    "LeaseRecord",
    "MutexHandle",
    "MutexTimeoutError",
    "NewerRunError",
    "NotSerializableError",
    "RetryPolicy",
    "RunNotFoundError",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "StaleOwnerError",
    "StepContext",
    "StepCall",
    "StepInterceptor",
    "Proceed",
    "RunCall",
    "StepFailedError",
    "StepExited",
    "StepTimeoutError",
    "StepRecord",
    "StepStatus",
    "StoreError",
    "StoreUnavailableError",
    "SystemClock",
    "TetherError",
    "Workflow",
    "WorkflowDef",
    "WorkflowIdConflictError",
    "WorkflowNotFoundError",
    "__version__",
    "open_workflow",
    "run_workflow",
    # typed stages and pipelines (tether.stages)
    "Failed",
    "NotReady",
    "Pipeline",
    "PipelineError",
    "Ready",
    "Stage",
    "StageContext",
    "StageError",
    "StageFailedError",
    "StageRecord",
    "StageTimeoutError",
    "Suspend",
    "batch_stage",
    "stage",
}

STAGES = {
    "AIConfig", "Artifacts", "ConcurrencyConfig", "DebugConfig", "Failed", "FeatureFlags",
    "NotReady", "Pipeline", "PipelineError", "PipelineRun", "Ready", "Stage", "StageContext",
    "StageError", "StageFailedError", "StageTimeoutError", "StandardConfig", "Suspend",
    "batch_stage", "stage",
}  # fmt: skip

BLOBS = {
    "BlobStore", "DatabaseBlobStore", "FileBlobStore", "MemoryBlobStore", "check_key",
    "default_blobs",
}  # fmt: skip


def test_stage_and_blob_names_are_pinned() -> None:
    import tether.blobs
    import tether.stages

    assert set(tether.stages.__all__) == STAGES
    assert set(tether.blobs.__all__) == BLOBS


def test_exported_names_are_pinned() -> None:
    assert set(tether.__all__) == EXPECTED
    for name in tether.__all__:
        assert hasattr(tether, name), name


def test_every_error_is_a_tether_error_and_reexported() -> None:
    import asyncio

    for name in tether.errors.__all__:
        cls = getattr(tether.errors, name)
        if name == "RunCancelledError":  # control flow: a CancelledError, not an error
            assert issubclass(cls, asyncio.CancelledError)
            assert not issubclass(cls, Exception)
        else:
            assert issubclass(cls, tether.TetherError)
        assert getattr(tether, name) is cls


def test_package_is_typed() -> None:
    from importlib import resources

    assert resources.files("tether").joinpath("py.typed").is_file()
