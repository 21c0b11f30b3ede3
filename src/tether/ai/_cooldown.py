"""Shared cooldowns: the calls of a process to a rate-limited provider wait together.

A fan-out of N calls to a rate-limited account burned N calls per wave, each
call learning the limit from its own 429 and backing off alone. Here, per
provider (its name in an App's `Providers`), for every run and branch of the
process:

- a rate limit that says until when (a 429, or a 529 overloaded, with a
  ``retry-after``) sets a cooldown until then; a call about to reach the
  provider waits it out on the App's clock, at most `MOST_WAIT` seconds (the
  longest ``retry-after`` a step honours: waiting never costs more than the 429
  it saves);
- while the provider is in doubt (no call has answered in this process yet,
  or it was rate limited since), one call at a time reaches it, the first to
  try; the others wait for how it ends: limited again, they wait the new
  cooldown; answered (or failed otherwise), they all go. That call's wait is
  bounded by its own request's timeout.

The wait is inside the step's attempt: no attempt of its own, nothing
written. Other processes learn a cooldown from the database, at their own first
429 (`WorkflowAI`: a lock of scope ``ai.cooldown`` expiring at its end).
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime, timedelta

from ..clock import Clock
from ._errors import ProviderError

__all__ = ["MOST_WAIT", "RATE_LIMITED", "Cooldowns", "Turn", "limited_until"]

#: the longest a cooldown holds a call back: the longest retry-after a step waits for
MOST_WAIT = 3600.0
#: a rate limit (429) and Anthropic's overloaded (529): the account must wait
RATE_LIMITED = frozenset({429, 529})


def limited_until(exc: ProviderError, now: datetime) -> datetime | None:
    """Until when the provider said it refuses calls: a rate limit with a
    ``retry-after`` (already read by the App's clock, `wait_from`) still to come;
    else None."""
    if exc.status not in RATE_LIMITED or not exc.retry_after or exc.retry_after <= 0:
        return None
    return now + timedelta(seconds=min(exc.retry_after, MOST_WAIT))


class _Doubt:
    """A provider's doubt on one event loop (a future cannot cross loops)."""

    def __init__(self) -> None:
        self.sure = False  # a call answered (or failed otherwise) since the last rate limit
        self.probe: asyncio.Future[None] | None = None  # the call in flight while in doubt


class _Gate:
    """One provider's cooldown in this process, and its doubt on each event loop."""

    def __init__(self) -> None:
        self.until: datetime | None = None  # the cooldown's end
        self.doubts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Doubt] = (
            weakref.WeakKeyDictionary()
        )

    def doubt(self) -> _Doubt:
        return self.doubts.setdefault(asyncio.get_running_loop(), _Doubt())


class Turn:
    """A call let through to the provider; `end` says how it went (once)."""

    def __init__(self, gate: _Gate, doubt: _Doubt, probe: asyncio.Future[None] | None) -> None:
        self._gate = gate
        self._doubt = doubt
        self._probe = probe
        self._ended = False

    def end(self, *, limited: bool = False, until: datetime | None = None) -> None:
        """The call ended: rate `limited` (a cooldown `until`, if it said), answered or
        failed otherwise (the provider takes calls: everyone goes)."""
        if self._ended:
            return
        self._ended = True
        gate = self._gate
        if until is not None and (gate.until is None or until > gate.until):
            gate.until = until
        self._doubt.sure = not limited
        self._release()

    def cut(self) -> None:
        """The call was cut short before it ended: nothing learnt, the next one tries."""
        if not self._ended:
            self._ended = True
            self._release()

    def _release(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(None)
        if self._doubt.probe is self._probe:
            self._doubt.probe = None


class Cooldowns:
    """The providers' cooldowns of this process, per `Providers` (an App's) and name;
    they go with their `Providers`."""

    def __init__(self) -> None:
        self._gates: weakref.WeakKeyDictionary[object, dict[str, _Gate]] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self, owner: object, name: str) -> _Gate:
        return self._gates.setdefault(owner, {}).setdefault(name, _Gate())

    async def enter(self, owner: object, name: str, clock: Clock) -> Turn:
        """Wait until a call may reach provider `name` of `owner`: past its cooldown
        (at most `MOST_WAIT` in all), and, while in doubt, once no other call is the
        one trying. The turn to `end` when the call ends."""
        gate = self._gate(owner, name)
        doubt = gate.doubt()
        waited = 0.0
        while True:
            left = 0.0 if gate.until is None else (gate.until - clock.now()).total_seconds()
            if left > 0 and waited < MOST_WAIT:
                nap = min(left, MOST_WAIT - waited)
                await clock.sleep(nap)
                waited += nap
                continue
            if doubt.sure or waited >= MOST_WAIT:
                return Turn(gate, doubt, None)
            if doubt.probe is None:
                doubt.probe = asyncio.get_running_loop().create_future()
                return Turn(gate, doubt, doubt.probe)
            await asyncio.shield(doubt.probe)  # its end, whoever waits, settles it
