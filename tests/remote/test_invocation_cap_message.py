"""The message of a run that used up its invocations reads as English for any cap."""

from __future__ import annotations

import pytest

from tether.remote import RemoteInvocationLimitError


@pytest.mark.parametrize(
    ("limit", "said"), [(1, "cap of 1 invocation without"), (3, "cap of 3 invocations without")]
)
def test_the_cap_is_said_in_the_singular_for_one(limit: int, said: str) -> None:
    """Before: "reached its cap of 1 invocations"."""
    message = str(RemoteInvocationLimitError("run-1", limit, last="timed out"))
    assert message.startswith(f"run 'run-1' reached its {said} ending; the last one: timed out")
