"""An answer line is parsed once: the check of what the store can keep takes the parsed
value (it parsed the line a second time only to check it: a 16 MB line decoded twice,
its result a third time when recorded), and the values it parsed are handed on."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tether.remote._call import _check_json, parse_line
from tether.serde import MAX_DEPTH


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (math.nan, "is nan"),
        ({"a": [1, math.inf]}, "$.a[1] is inf"),
        ("a\x00b", "NUL"),
        ({"k\x00": 1}, "NUL"),
        ("\udc80", "lone surrogate"),
        (_nested(MAX_DEPTH + 2), f"nested more than {MAX_DEPTH} levels"),
    ],
    ids=["nan", "inf", "nul", "nul-key", "surrogate", "deep"],
)
def test_the_check_takes_the_parsed_value(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=r"step\.result") as raised:
        _check_json("step.result", value)
    assert why in str(raised.value)


def test_a_value_the_store_keeps_passes_the_check() -> None:
    _check_json("state", {"a": [1, 2.5, "text", None, True], "b": _nested(MAX_DEPTH - 1)})


def _step(result: str, **fields: Any) -> bytes:
    step = {"key": "a", "name": "a", "result": result} | fields
    return json.dumps({"type": "step", "step": step}).encode()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{nope", "the line is not JSON text"),
        (b'\xef\xbb\xbf{"type":"state","state":"1"}', "the line is not JSON text"),
        (b'{"type":"state","state":"\xff"}', "the line is not UTF-8 text"),
        (b'{"type":"event","event":{"type":"x","v":' + b"[" * 10**5 + b"]" * 10**5 + b"}}",
         "the line is nested too deep"),
        (b'{"type":"event","event":{"type":"x","v":' + b"[" * 300 + b"]" * 300 + b"}}",
         f"nested more than {MAX_DEPTH} levels"),
        (b'{"type":"event","event":{"type":"x","v":NaN}}', "$.event.v is nan"),
        (_step("1", key="a\x00"), "$.step.key contains a NUL"),
        (_step("NaN"), "step.result cannot be stored"),
        (_step("[" * 10**5 + "]" * 10**5), "step.result is nested too deep"),
        (_step("{bad"), "step.result is not JSON text"),
        (b'{"type":"state","state":"[1e999]"}', "state cannot be stored"),
        (b'{"type":"step"}', "a 'step' line needs its 'step'"),
        (b'{"type":"event","event":{"type":5}}', "event.type must be a non-empty string"),
    ],
)  # fmt: skip
def test_every_check_still_fires_on_the_line_parsed_once(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_line(raw)
    assert why in str(raised.value)


def test_the_values_parsed_for_the_check_are_handed_on() -> None:
    answer = {"status": "completed", "output": json.dumps({"n": [1, 2]})}
    line, values = parse_line(json.dumps({"type": "answer", "answer": answer}).encode())
    assert line.answer is not None and line.answer.output == '{"n": [1, 2]}'  # the text
    assert values == {"answer.output": {"n": [1, 2]}}
    line, values = parse_line(b'{"type":"state","state":"{\\"count\\":3}"}')
    assert (line.state, values) == ('{"count":3}', {"state": {"count": 3}})
    line, values = parse_line(_step('"big"'))
    assert line.step is not None and line.step.result == '"big"'  # recorded as it came
    assert values == {"step.result": "big"}
