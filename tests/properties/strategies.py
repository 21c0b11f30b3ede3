"""Hypothesis strategies for the bad-input properties: names, JSON values, bad values.

Plain JSON is what a round trip must preserve exactly; a *bad* value is plain
JSON with one poisoned leaf (NaN, an infinity, an integer too long for text, a
lone surrogate, a NUL) at a known path, so a test can check that the error
names that path.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# text a database can hold: no NUL (PostgreSQL refuses it), no lone surrogates
safe_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
safe_text = st.text(safe_chars, max_size=20)


def json_values() -> st.SearchStrategy[Any]:
    """Plain JSON: dicts with str keys, lists, str, int (beyond 64 bits too), finite float
    of any magnitude, bool, None."""
    floats = st.floats(allow_nan=False, allow_infinity=False)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**200), max_value=2**200)
        | floats
        | safe_text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
        max_leaves=12,
    )


# -- one poisoned leaf at a known path -------------------------------------------------

_LONG_INT_DIGITS = sys.get_int_max_str_digits() + 1

bad_leaves: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=0, max_value=50).map(lambda k: 10 ** (_LONG_INT_DIGITS + k)),
    st.tuples(safe_text, st.characters(categories=("Cs",)), safe_text).map("".join),
    st.tuples(safe_text, safe_text).map(lambda p: p[0] + "\x00" + p[1]),
)

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
path_steps = st.lists(st.one_of(identifiers, st.integers(min_value=0, max_value=3)), max_size=5)


@dataclass(frozen=True)
class Poisoned:
    value: Any
    path: str  # where the bad leaf sits, as tether's errors write it ($.a[2].b)
    leaf: Any


@st.composite
def poisoned_values(draw: st.DrawFn) -> Poisoned:
    """A JSON value with exactly one bad leaf, and the path tether should report."""
    leaf = draw(bad_leaves)
    steps = draw(path_steps)
    value: Any = leaf
    for step in reversed(steps):  # an int: a list index, with fine fillers before it
        value = [0] * step + [value] if isinstance(step, int) else {step: value}
    path = "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
    return Poisoned(value, path, leaf)


def nested(depth: int, *, dicts: bool = False) -> Any:
    """A value `depth` containers deep, built without recursion."""
    value: Any = None
    for _ in range(depth):
        value = {"k": value} if dicts else [value]
    return value


# -- names --------------------------------------------------------------------------------

blank_names = st.one_of(st.just(""), st.text(" \t\n\r\x0b\x0c", min_size=1, max_size=5))
nul_names = st.tuples(safe_text, safe_text).map(lambda p: p[0] + "\x00" + p[1])
surrogate_names = st.tuples(safe_text, st.characters(categories=("Cs",)), safe_text).map("".join)
non_str_names = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=5),
    st.tuples(st.integers()),
)
bad_names = st.one_of(blank_names, nul_names, surrogate_names, non_str_names)
good_names = st.text(safe_chars, min_size=1, max_size=60).filter(lambda s: s.strip() != "")


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
