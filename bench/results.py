"""CPU cost of recording an untyped step result: `tether._results.recorded_result`.

Run: ``.venv/bin/python bench/results.py`` (``PYTHONPATH=<another tree>/src`` in
front times that tree's code instead: the tether it imports is printed first).

Times the call a step makes when its function declares no return type and
returns plain JSON (no store, no event loop): the checks that the value comes
back the same on replay, its JSON text and the copy the first run returns. Three
values: (a) a 20-key dict of mixed scalars and short lists, (b) a list of 200
such dicts, (c) an int. Prints microseconds per call, the best of a few
repeats (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import timeit
from typing import Any

import tether
from tether._results import recorded_result


def small_dict(i: int) -> dict[str, Any]:
    """20 keys: ints, floats, str, bool, None and short lists of them."""
    shapes: list[Any] = [
        i,
        i * 1.5,
        f"text {i}",
        i % 2 == 0,
        None,
        [i, 2.5, "s"],
        ["a", "b"],
        [True, None, -3],
    ]
    return {f"key{k}": shapes[k % len(shapes)] for k in range(20)}


def per_call(value: Any, number: int, repeat: int) -> float:
    """The best time of `repeat` rounds of `number` calls, in µs per call."""
    timer = timeit.Timer(lambda: recorded_result(value, what="the result of step 'x'"))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds per value (best kept)")
    args = parser.parse_args()
    print(f"tether from {tether.__file__}")
    cases = [
        ("(a) 20-key dict", small_dict(7), 5000),
        ("(b) list of 200 such dicts", [small_dict(i) for i in range(200)], 50),
        ("(c) int", 12345, 50000),
    ]
    for label, value, number in cases:
        print(f"{label:<28} {per_call(value, number, args.repeat):10.2f} µs per call")


if __name__ == "__main__":
    main()
