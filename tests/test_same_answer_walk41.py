"""What a workflow's code sees on its first drive, it sees on every replay in another process.

A child process drives a run until it parks: the code writes what it saw of each value
(type names, key orders, float reprs, an error's class, args, attributes and cause) to
a file on every drive. A second process answers the wait and resumes the run, so each
value is seen again, replayed from the store; both must have seen the same. Run on
SQLite and on PostgreSQL.

A step's error, raised again on replay, came back without its ``__cause__``: code
that caught it and looked at what it was raised from went another way on replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from ._env import child_pythonpath

MODULE = textwrap.dedent(
    """
    import asyncio, dataclasses, datetime as dt, decimal, enum, json, os, sys, uuid
    from typing import Any, Optional
    import pydantic
    import tether

    app = tether.App(os.environ["DB"])
    OUT = os.environ["OUT"]
    DRIVE = [0]

    class Color(enum.Enum):
        RED = "red"

    class M(pydantic.BaseModel):
        z: int
        a: dict[str, Any]
        f: float = 1.0

    @dataclasses.dataclass
    class D:
        z: int
        a: Any

    class Refused(Exception):
        def __init__(self, message, code):
            super().__init__(message)
            self.code = code

    def desc(v):
        name = type(v).__name__
        if isinstance(v, dict):
            return [name, [[desc(k), desc(x)] for k, x in v.items()]]
        if isinstance(v, (list, tuple, set)):
            return [name, [desc(x) for x in v]]
        if isinstance(v, BaseException):
            attrs = {k: repr(x) for k, x in sorted(vars(v).items())}
            cause = None if v.__cause__ is None else desc(v.__cause__)
            return [name, repr(v.args), attrs, cause, str(v)]
        if isinstance(v, pydantic.BaseModel) or dataclasses.is_dataclass(v):
            return [name, desc(dict(vars(v)))]
        return [name, repr(v)]

    def see(label, value):
        line = {"pid": os.getpid(), "drive": DRIVE[0], "label": label, "seen": desc(value)}
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\\n")

    async def seen(label, awaitable):
        try:
            see(label, await awaitable)
        except Exception as exc:
            see(label + " raised", exc)

    def gives(value):
        return lambda: value

    def refuses():
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise Refused("refused", {"zeta": 1, "a": 2}) from exc

    def not_found():
        raise FileNotFoundError(2, "nope", "/x")

    def annotated() -> dict[str, float]:
        return {"zz": 1, "a": -0.0}

    @app.workflow
    async def kid(wf: tether.Workflow, given: dict) -> M:
        return M(z=1, a={"zz": given, "a": -0.0})

    @app.workflow
    async def probe(wf: tether.Workflow, given: dict) -> str:
        DRIVE[0] += 1
        see("input", given)
        see("state", wf.state)
        plain = {"zeta": 1, "a": {"yy": 1.0, "b": [-0.0, 1e23, 2**70, 5e-324]}}
        await seen("plain", wf.step("plain", gives(plain)))
        await seen("float", wf.step("float", gives(1.0)))
        await seen("big", wf.step("big", gives(2**80)))
        typed = [
            ("when", dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=5))), dt.datetime),
            ("day", dt.date(2024, 1, 2), dt.date),
            ("a-uuid", uuid.UUID(int=5), uuid.UUID),
            ("decimal", decimal.Decimal("1.10"), decimal.Decimal),
            ("enum", Color.RED, Color),
            ("model", M(z=1, a={"y": 1, "b": 2}), M),
            ("optional", None, Optional[int]),
            ("int-or-float", 1, int | float),
            ("float-of-int", 1, float),
            ("tuple", (1, "a"), tuple[int, str]),
            ("set", {3, 1, 2}, set[int]),
            ("bytes", b"abc", bytes),
            ("int-keys", {2: "a", 1: "b"}, dict[int, str]),
        ]
        for name, value, tp in typed:
            await seen(name, wf.step(name, gives(value), result_type=tp))
        await seen("dataclass", wf.step("dataclass", gives(D(z=2, a=[1.0, -0.0]))))
        await seen("untyped-model", wf.step("untyped-model", gives(M(z=3, a={"q": 1}))))
        await seen("annotated", wf.step("annotated", annotated))
        await seen("error", wf.step("error", refuses, retry=1))
        await seen("os-error", wf.step("os-error", not_found, retry=1))
        see("now", await wf.now())
        see("random", await wf.random())
        see("uuid", await wf.uuid())
        await seen("update", wf.update_state({"zeta": 1, "a": -0.0, "b": 2**70}))
        see("state after", wf.state)
        await seen("child", wf.child(kid, {"zeta": 1.0, "a": 1}))

        async def item(x):
            return await wf.step("item", lambda: {"zz": x, "a": float(x)})

        summary = await wf.for_each([2, 1, 3], item, max_parallel=3)
        see("for_each", [[r.item, r.value] for r in summary.results])
        see("signal", await wf.wait_for_signal("go"))
        await seen("typed signal", wf.wait_for_signal("model", result_type=M))
        await seen("float signal", wf.wait_for_signal("float", result_type=float))
        see("event", await wf.wait_for_event("tick"))
        token = await wf.create_token()
        see("token", await wf.wait_for_token(token))
        await wf.wait_for_signal("finish")
        return "done"

    async def main(phase):
        wid = os.environ["WID"]
        payload = {"zeta": 1, "a": 1.0, "n": -0.0, "big": 2**70}
        if phase == "first":
            started = await app.arun(
                probe, {"zeta": 1, "a": {"yy": 1.0, "b": -0.0}}, workflow_id=wid,
                initial_state={"zz": 1, "a": 1.0},
            )
            assert started.status.value == "waiting", started
            await app.asignal(wid, "go", payload)
            await app.asignal(wid, "model", {"z": 1, "a": {"y": 1, "b": 2}, "f": 1})
            await app.asignal(wid, "float", 1)
            assert (await app.aresume(wid)).status.value == "waiting"
            await app.asend_event("tick", payload)
            assert (await app.aresume(wid)).status.value == "waiting"
            token = [w.id for w in await app.alist_waits(wid) if w.kind.value == "token"]
            await app.acomplete_token(token[0], payload)
            assert (await app.aresume(wid)).status.value == "waiting"
        else:
            await app.asignal(wid, "finish", None)
            assert (await app.aresume(wid)).status.value == "completed"
        await app.aclose()

    if __name__ == "__main__":
        asyncio.run(main(sys.argv[1]))
    """
)


def _drive(tmp_path: Path, database_url: str, phase: str) -> None:
    script = tmp_path / "same_answer.py"
    script.write_text(MODULE)
    env = {
        **os.environ,
        "DB": database_url,
        "OUT": str(tmp_path / "seen.jsonl"),
        "WID": "same-answer",
        "PYTHONPATH": child_pythonpath(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, str(script), phase], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _seen(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    by_label: dict[str, list[dict[str, Any]]] = {}
    for line in (tmp_path / "seen.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_label.setdefault(row["label"], []).append(row)
    return by_label


def test_every_value_replays_in_another_process_as_first_seen(
    tmp_path: Path, database_url: str
) -> None:
    _drive(tmp_path, database_url, "first")
    _drive(tmp_path, database_url, "second")
    by_label = _seen(tmp_path)
    assert len(by_label) == 35
    for label, rows in by_label.items():
        # seen first where the value was made, last in the second process
        assert len({row["pid"] for row in rows}) == 2, label
        first = rows[0]["seen"]
        differing = [row for row in rows if row["seen"] != first]
        assert not differing, (label, first, differing[0])
    error = by_label["error raised"][0]["seen"]
    assert error[0] == "Refused" and error[2] == {"code": "{'zeta': 1, 'a': 2}"}
    assert error[3][:2] == ["KeyError", "('inner',)"]
    assert by_label["plain"][0]["seen"][1][0] == [["str", "'zeta'"], ["int", "1"]]
    assert by_label["float signal"][0]["seen"] == ["float", "1.0"]
