"""JSON at rest: dumping through pydantic, typed loading, clear refusals."""

from __future__ import annotations

import dataclasses
import functools
import gc
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import Enum

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tether import NotSerializableError
from tether.serde import MAX_DEPTH, dump_json, dump_plain, is_plain, load_json, return_type_of


class M(BaseModel):
    a: int
    when: datetime


@dataclasses.dataclass
class D:
    x: int
    tags: set[str]


class Colour(Enum):
    RED = "red"


def test_models_dataclasses_enums_and_datetimes_dump_to_json() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    text = dump_json({"m": M(a=1, when=when), "d": D(1, {"t"}), "c": Colour.RED}, what="v")
    assert load_json(text) == {
        "m": {"a": 1, "when": "2026-01-02T00:00:00Z"},
        "d": {"x": 1, "tags": ["t"]},
        "c": "red",
    }


def test_typed_round_trip() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    text = dump_json([M(a=1, when=when)], what="v", tp=list[M])
    back = load_json(text, list[M])
    assert back == [M(a=1, when=when)]


def test_refusal_names_what_type_and_path() -> None:
    class Handle:
        pass

    with pytest.raises(NotSerializableError) as info:
        dump_json({"ok": [1, {"h": Handle()}]}, what="the result of step 'x'")
    assert info.value.offending_type is Handle
    assert info.value.path == "$.ok[1].h"
    assert "the result of step 'x'" in str(info.value)


def test_non_finite_float_refused() -> None:
    with pytest.raises(NotSerializableError, match=r"\$\.v"):
        dump_json({"v": float("inf")}, what="x")


def _nested(levels: int, inner: object, *, key: str | None = None) -> object:
    for _ in range(levels):
        inner = [inner] if key is None else {key: inner}
    return inner


def _containing_itself() -> dict[str, object]:
    looped: dict[str, object] = {"n": 1}
    looped["me"] = looped
    return looped


@pytest.mark.parametrize(
    "data",
    [
        {"a": [1, 2.5, "s", None, True], "é": {"b": -0.0, "c": [-0.0, -0.05, 1e16]}},
        {"v": [1, float("nan")]},
        [float("-inf")],
        {"n": [10**5000]},
        {"s": "a\ud800"},
        {"k\udc00": 1},
        {"s": ["x\x00"]},
        {"\x00": 1},
        {"s": "\\u0000"},  # the six characters, not a NUL
        _nested(MAX_DEPTH, 1),
        _nested(MAX_DEPTH - 1, {}, key="k"),
        [_nested(MAX_DEPTH - 1, []), float("nan")],
        {"k\udc00": 1, "deep": _nested(MAX_DEPTH - 1, [])},  # refused for its depth first
        -0.0,
        "x\ud800",
    ],
)
def test_plain_data_is_dumped_or_refused_as_dump_json_does(data: object) -> None:
    def outcome(dump: Callable[..., str]) -> object:
        try:
            return dump(data, what="the result of step 'x'")
        except NotSerializableError as exc:
            return (str(exc), exc.offending_type, exc.path)

    assert is_plain(data)
    assert outcome(dump_plain) == outcome(dump_json)


def test_plain_data_goes_as_deep_as_pydantic_dumps() -> None:
    for key in (None, "k"):
        at_the_limit = (_nested(MAX_DEPTH, 1, key=key), _nested(MAX_DEPTH, [], key=key))
        for data in at_the_limit:
            assert is_plain(data)
            dump_json(data, what="x")
        for data in (_nested(MAX_DEPTH, [1], key=key), _nested(MAX_DEPTH + 1, {}, key=key)):
            assert not is_plain(data)
            with pytest.raises(NotSerializableError, match=f"more than {MAX_DEPTH} levels"):
                dump_json(data, what="x")
    assert not is_plain(_containing_itself())
    with pytest.raises(NotSerializableError, match="or contains itself"):
        dump_plain(_containing_itself(), what="x")  # not plain, and refused all the same


class _Text(str):
    pass


@pytest.mark.parametrize(
    "data", [(1,), {1: "a"}, [{2}], {"d": b"x"}, _Text("a"), [True, _Text("b")], {_Text("k"): 1}]
)
def test_other_types_are_not_plain(data: object) -> None:
    assert not is_plain(data)


class Scored(BaseModel):
    label: str
    score: float | None = None
    extra: object = None


def test_a_typed_value_hiding_a_non_finite_as_null_is_refused_where_it_hides() -> None:
    # pydantic writes NaN and infinities as null in a float field or under Any
    for bad, path in (
        (Scored(label="a", score=float("nan")), "$.score"),
        (Scored(label="a", extra={"k": [1.0, float("-inf")]}), "$.extra.k[1]"),
    ):
        with pytest.raises(NotSerializableError) as caught:
            dump_json(bad, what="the result of step 'f'", tp=Scored)
        assert caught.value.path == path


def test_words_nan_and_infinity_in_a_typed_value_are_only_text() -> None:
    # they match the quick search for a spelled-out NaN; the walk then clears them
    value = Scored(label="NaN, Infinity and -Infinity", extra={"NaN": "Infinity"})
    text = dump_json(value, what="x", tp=Scored)
    assert load_json(text, Scored) == value


def test_return_type_detection() -> None:
    async def a() -> M: ...

    def b() -> list[int]:
        return []

    def c():  # type: ignore[no-untyped-def]
        return 1

    assert return_type_of(a) is M
    assert return_type_of(b) == list[int]
    assert return_type_of(c) is None
    assert return_type_of(lambda: 1) is None


class _Document:
    """Something large a step function captures."""


def handled(doc: _Document) -> M:
    return M(a=id(doc), when=datetime.now(UTC))


def test_the_return_type_cache_keeps_no_step_function_alive() -> None:
    """Closures made afresh for each step share their code: they are typed once, and
    what they captured is not kept alive by the cache."""
    gone: list[weakref.ref[_Document]] = []

    def step_fn(doc: _Document) -> Callable[[], Awaitable[list[int]]]:
        async def call() -> list[int]:
            return [id(doc)]

        return call

    class Handler:
        def __init__(self, doc: _Document) -> None:
            self.doc = doc

        def handle(self) -> M:
            return M(a=1, when=datetime.now(UTC))

    for _ in range(3):
        doc = _Document()
        gone.append(weakref.ref(doc))
        assert return_type_of(step_fn(doc)) == list[int]
        assert return_type_of(lambda doc=doc: doc) is None
        assert return_type_of(Handler(doc).handle) is M
        assert return_type_of(functools.partial(handled, doc)) is M
        del doc
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]


def test_bytes_that_are_not_utf8_say_how_to_declare_them() -> None:
    from pydantic import Base64Bytes

    with pytest.raises(NotSerializableError, match=r"not UTF-8 text.*Base64Bytes"):
        dump_json(b"\x00\xff", what="the result of step 'mk'", tp=bytes)
    text = dump_json(b"\x00\xff", what="x", tp=Base64Bytes)
    assert load_json(text, Base64Bytes) == b"\x00\xff"


class _Mail(BaseModel):
    sender: str = Field(alias="from")
    subject: str


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    first_name: str


def test_a_model_with_aliases_is_written_as_it_reads_back() -> None:
    """Written by field name, `{"sender": ...}` did not read back as `_Mail`, which reads
    `from`: a step or a run returning such a model failed (NotSerializableError)."""
    mail = _Mail.model_validate({"from": "ada", "subject": "hi"})
    text = dump_json(mail, what="v", tp=_Mail)
    assert load_json(text) == {"from": "ada", "subject": "hi"}
    assert load_json(text, _Mail) == mail
    camel = _Camel(firstName="ada")
    assert load_json(dump_json([camel], what="v", tp=list[_Camel]), list[_Camel]) == [camel]


async def test_a_run_of_aliased_models_replays_them(sqlite_url: str) -> None:
    from tether import App, Workflow

    app = App(sqlite_url)

    @app.workflow
    async def reply(wf: Workflow, mail: _Mail) -> _Mail:
        async def who() -> _Camel:
            return _Camel(firstName=mail.sender)

        person = await wf.step("who", who)
        return _Mail.model_validate({"from": person.first_name, "subject": "re: " + mail.subject})

    try:
        mail = _Mail.model_validate({"from": "ada", "subject": "hi"})
        first = await app.arun(reply, mail, workflow_id="aliased")
        again = await app.arun(reply, mail, workflow_id="aliased")
        assert (
            first.value == again.value == _Mail.model_validate({"from": "ada", "subject": "re: hi"})
        )
    finally:
        await app.aclose()
