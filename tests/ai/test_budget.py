"""`ai.Budget`'s limits: a bool or a non-finite number is no limit, whether the
budget is made in code, from a dict, or raised by a ``budget.raise`` signal."""

from __future__ import annotations

from typing import Any

import pytest

from tether import InvalidArgumentError, ai

NOT_LIMITS = [
    ({"max_usd": True}, "max_usd: Input should be a number, not a bool"),
    ({"max_tokens": True}, "max_tokens: Input should be a number, not a bool"),
    ({"max_usd": "1e309"}, "max_usd: Input should be a finite number"),
    ({"max_usd": float("inf")}, "max_usd: Input should be a finite number"),
    ({"max_usd": float("nan")}, "max_usd: Input should be a finite number"),
]


@pytest.mark.parametrize(("limits", "says"), NOT_LIMITS)
def test_a_bool_or_non_finite_limit_is_refused_saying_what_to_pass(
    limits: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"budget is not valid \\({says}\\); pass e.g"):
        ai.Budget(**limits)
    with pytest.raises(InvalidArgumentError, match=says):
        ai.Budget.of(limits)
    with pytest.raises(InvalidArgumentError, match=f"budget.raise signal .*{says}.*'max_usd': 5"):
        ai.Budget(max_usd=1.0).raised(limits)
    with pytest.raises(InvalidArgumentError, match=says):
        ai.Budget.check_raise(limits)  # what App.signal asks before sending it


def test_valid_limits_still_make_a_budget() -> None:
    assert ai.Budget(max_usd=2, max_tokens=10).max_usd == 2.0
    assert ai.Budget(max_usd=1.0).raised({"max_usd": 5, "max_tokens": 100}).max_tokens == 100
    with pytest.raises(InvalidArgumentError, match="give max_usd, max_tokens or both"):
        ai.Budget()


def test_a_limit_below_a_cent_reads_in_micro_dollars() -> None:
    from tether.store import AISpend

    said = ai.Budget(max_usd=0.00001).describe(AISpend(calls=2, micro_usd=18, tokens=9))
    assert said == "this run has spent $0.000018 of $0.000010"  # before: $0.0000 of $0.0000
    big = ai.Budget(max_usd=0.7).describe(AISpend(calls=1, micro_usd=800_000))
    assert big == "this run has spent $0.8000 of $0.7000"
