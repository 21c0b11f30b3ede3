"""Admission of budgeted calls: branches in flight at once share one budget.

The budget check reads the recorded spend, which a call reaches only when its
step's completion is written, so `for_each` branches in flight together would
all read the same old total and all pass. Calls of one budget scope (a run, or
a shared key) are therefore admitted here, per process and event loop:

- a call's cost counts from the moment it returned, before its step is logged;
  it is held in memory until the log has it, then dropped (counted once);
- while calls of the scope are in flight, a new one is admitted only if the
  spend plus an estimate of those in flight (their count times the largest
  cost one call has had) is under the limit; until a cost is known, one call
  at a time. Otherwise it waits for a call to end and decides again.

So parallel branches overshoot by about one call, as sequential ones do. A
stop is decided only on an exact view (nothing of the scope in flight or
unlogged here, nothing logged during the read), so a cost seen both in the log
and in memory cannot stop a run that is under its limit. Unbudgeted calls never
come here. Other processes' calls count once they are logged, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal

from ._budget import Budget, Spend

__all__ = ["Admissions", "Ticket"]

_Verdict = Literal["admit", "stop", "wait", "again"]


def _plus(a: Spend, b: Spend, times: int = 1) -> Spend:
    return Spend(
        calls=a.calls + times * b.calls,
        micro_usd=a.micro_usd + times * b.micro_usd,
        unknown_cost_calls=a.unknown_cost_calls + times * b.unknown_cost_calls,
        tokens=a.tokens + times * b.tokens,
    )


class _Scope:
    """The calls of one budget scope in this process."""

    def __init__(self) -> None:
        self.in_flight = 0  # admitted, not returned
        self.unlogged = Spend()  # what returned calls cost, their steps not yet logged
        self.unlogged_calls = 0
        self.logs = 0  # tickets logged so far: a read they overlap is not exact
        self.logged = Spend()  # what they cost, in all
        self.largest: Spend | None = None  # the most one admitted call has cost
        self.users = 0  # admissions under way and tickets not yet logged
        self._waiters: list[asyncio.Future[None]] = []

    def spend(self, recorded: Spend, logged: Spend) -> Spend:
        """What is spent, by a read of the log made when `logged` was what this process
        had logged: a call logged since may be in it too (counted twice, to be safe)."""
        return _plus(_plus(recorded, self.unlogged), _plus(self.logged, logged, -1))

    def busy(self) -> bool:
        return bool(self.in_flight or self.unlogged_calls)

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:  # cancelled while waiting
                self._waiters.remove(waiter)

    def verdict(self, budget: Budget, spend: Spend, *, exact: bool) -> _Verdict:
        if budget.judge(spend) == "exceeded":
            if self.busy():
                return "wait"  # decide on what they cost, once logged
            return "stop" if exact else "again"
        if not self.in_flight:
            return "admit"
        if self.largest is None:
            return "wait"  # one at a time until a cost is known
        ahead = _plus(spend, self.largest, self.in_flight)
        return "wait" if budget.judge(ahead) == "exceeded" else "admit"


class Ticket:
    """One admitted call: what it cost so far; it returns, then its step is logged."""

    def __init__(self, scope: _Scope, judged: Spend, leave: Callable[[], None]) -> None:
        self.judged = judged  # the spend it was admitted on
        self._scope = scope
        self._leave = leave
        self._spent = Spend()
        self._state: Literal["flight", "returned", "logged"] = "flight"

    @property
    def spend(self) -> Spend:
        """The spend it was admitted on and what its own calls cost since: what a call
        it makes next (`generate_object` asking again) is judged on."""
        return _plus(self.judged, self._spent)

    def cost(self, micro_usd: int | None, tokens: int) -> None:
        """A provider call of this admission was recorded (and priced). Its cost is
        unknown if `micro_usd` is None (no price, or an answer that told no usage): as
        the call log's spend sums will count it once it is logged (they read an index
        of cost and tokens alone, which cannot tell a call that failed)."""
        unknown = micro_usd is None
        one = Spend(
            calls=1, micro_usd=micro_usd or 0, unknown_cost_calls=int(unknown), tokens=tokens
        )
        self._spent = _plus(self._spent, one)
        if self._state != "logged":
            self._scope.unlogged = _plus(self._scope.unlogged, one)

    def returned(self, ok: bool) -> None:
        """The call ended (`ok`: it answered); its cost now counts as spent."""
        if self._state != "flight":
            return
        scope = self._scope
        self._state = "returned"
        scope.in_flight -= 1
        scope.unlogged_calls += 1
        if ok or self._spent.calls:  # a failure that cost nothing says nothing of a cost
            top = scope.largest or Spend()
            scope.largest = Spend(
                micro_usd=max(top.micro_usd, self._spent.micro_usd),
                tokens=max(top.tokens, self._spent.tokens),
            )
        scope.notify()

    def logged(self) -> None:
        """The step's completion (or failed attempt) was written with its calls."""
        if self._state == "logged":
            return
        self.returned(False)
        scope = self._scope
        self._state = "logged"
        scope.unlogged = _plus(scope.unlogged, self._spent, -1)
        scope.unlogged_calls -= 1
        scope.logs += 1
        scope.logged = _plus(scope.logged, self._spent)
        self._leave()
        scope.notify()


class Admissions:
    """The budget scopes of this process, each while some call of it is under way."""

    def __init__(self) -> None:
        self._scopes: dict[Hashable, _Scope] = {}

    async def admit(
        self, key: Hashable, budget: Budget, read: Callable[[], Awaitable[Spend]]
    ) -> tuple[Spend, Ticket | None]:
        """Wait until a call of scope `key` may run. The spend it was judged on, and its
        ticket, or None: the budget is exceeded and the call must not run. `read`
        gives the recorded spend (the call log)."""
        scope_key = (id(asyncio.get_running_loop()), key)  # a loop's own: no threads share it
        scope = self._scopes.setdefault(scope_key, _Scope())
        scope.users += 1
        ticket: Ticket | None = None
        try:
            while True:  # every decision on a fresh read; waits are measured in memory
                seen, logged = scope.logs, scope.logged
                recorded = await read()
                spend = scope.spend(recorded, logged)
                verdict = scope.verdict(budget, spend, exact=scope.logs == seen)
                if verdict == "admit":
                    scope.in_flight += 1
                    ticket = Ticket(scope, spend, lambda: self._leave(scope_key, scope))
                    return spend, ticket
                if verdict == "stop":
                    return spend, None
                while verdict == "wait":  # until calls in flight end, enough to ask again
                    await scope.changed()
                    verdict = scope.verdict(budget, scope.spend(recorded, logged), exact=False)
        finally:
            if ticket is None:
                self._leave(scope_key, scope)

    def _leave(self, scope_key: Hashable, scope: _Scope) -> None:
        scope.users -= 1
        if scope.users == 0 and self._scopes.get(scope_key) is scope:
            del self._scopes[scope_key]

    def __len__(self) -> int:
        """How many scopes have a call under way (none once all are logged)."""
        return len(self._scopes)
