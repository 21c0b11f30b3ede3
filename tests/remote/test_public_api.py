"""The public surface of `tether.remote` is pinned: an accidental change fails here."""

from __future__ import annotations

import tether
import tether.remote

REMOTE = {
    "PROTOCOL_HEADER", "PROTOCOL_VERSION", "SUPPORTED_PROTOCOLS", "Answer", "Invocation",
    "Journal", "JournalAttempt", "JournalStep", "JournalWait", "Line", "RemoteDeadlineError", "RemoteError",
    "RemoteInvocationLimitError", "RemoteRefusedError", "RemoteSpec", "RemoteTooLargeError", "RemoteUnavailableError",
    "RemoteVersionError", "RemoteWorkflowError", "RunMeta", "TenantApp", "TenantMeta",
    "Waitpoint", "handler", "remote_workflow",
}  # fmt: skip


def test_remote_names_are_pinned() -> None:
    assert set(tether.remote.__all__) == REMOTE
    for name in REMOTE:
        assert hasattr(tether.remote, name), name


def test_remote_errors_are_tether_errors() -> None:
    for name in REMOTE:
        value = getattr(tether.remote, name)
        if name.endswith("Error"):
            assert issubclass(value, tether.remote.RemoteError)
            assert issubclass(value, tether.TetherError)
