"""`WaitSummary.info`: a wait read through the API is the `WaitInfo` it was served from
(`runs show --server` prints it as `runs show` prints `App.list_waits`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from tether import WaitInfo
from tether.server._models import WaitSummary
from tether.store import WaitKind, WaitStatus

_AT = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def test_a_summary_is_the_wait_it_was_made_of_but_its_payload() -> None:
    waits = [
        WaitInfo(
            "w1",
            "run-1",
            "approve",
            WaitKind.EVENT,
            "approved",
            '{"order":7}',
            WaitStatus.RESOLVED,
            '{"ok": true}',
            None,
            _AT,
            _AT,
        ),
        WaitInfo(
            "w2",
            "run-1",
            "nap",
            WaitKind.TIMER,
            None,
            None,
            WaitStatus.PENDING,
            None,
            _AT,
            _AT,
            None,
        ),
    ]
    for w in waits:
        back = WaitSummary.model_validate_json(WaitSummary.of(w).model_dump_json())
        assert back.info("run-1") == dataclasses.replace(w, payload=None)
