"""What the property tests share: settings, an App per test, a record snapshot, message checks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings

from tether import App, FakeClock, RunRecord, TetherError

# an App (and its database) lives for the whole test; examples use fresh run ids
_COMMON = {
    "deadline": None,
    "database": None,  # no .hypothesis folder in the work tree
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
FAST = settings(max_examples=150, **_COMMON)  # pure functions, no database
HEAVY = settings(max_examples=40, **_COMMON)  # engine loops on SQLite
LIGHT = settings(max_examples=8, **_COMMON)  # the same properties, also on PostgreSQL

_ids = itertools.count()


def new_id(prefix: str = "prop") -> str:
    return f"{prefix}-{next(_ids)}"


def new_app(url: str) -> App:
    return App(url, clock=FakeClock(), resume_woken=False)


HINTS = (
    "use ",
    "pass ",
    "store it",
    "remove",
    "decode",
    "flatten",
    "return ",
    "keep ",
    "give ",
    "e.g.",
    "known:",
)


def assert_clear(exc: BaseException, *names: str, hint: bool = True) -> None:
    """A refusal is tether's, names what was wrong, and (`hint`) says how to fix it."""
    assert isinstance(exc, TetherError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    text = str(exc)
    for name in names:
        assert name in text, f"{name!r} not named in: {text}"
    if hint:
        assert any(h in text.lower() for h in HINTS), f"no hint on how to fix it in: {text}"
    assert "\n" not in text.strip(), f"not one line: {text}"


@dataclass(frozen=True)
class Snapshot:
    """What must not change when bad input is refused."""

    status: str
    state: Any
    steps: dict[str, tuple[str, Any, int]]
    events: int
    input: Any

    @classmethod
    def of(cls, rec: RunRecord) -> Snapshot:
        return cls(
            status=rec.status.value,
            state=rec.state,
            steps={n: (s.status.value, s.result, s.attempts) for n, s in rec.steps.items()},
            events=len(rec.events),
            input=rec.input,
        )
