"""`StageContext`: what a stage's function gets, and its artifacts.

Logs and progress are events of the run. A call made inside a step is
written with the step (once, in its transaction); a call in the stage's own
code is written at once and numbered, so the code running again on resume
(after a wait, or a crash) does not write it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload
from urllib.parse import quote, unquote

from pydantic import BaseModel

from .._attach import attach, in_step
from ..blobs import check_key
from ..errors import InvalidArgumentError, NotSerializableError
from ..serde import dump_json, to_json_data
from ..store import NewEvent
from ._errors import did_you_mean
from ._stage import Stage

if TYPE_CHECKING:
    from .._workflow import Workflow
    from ..ai import WorkflowAI

__all__ = ["Artifacts", "StageContext", "place_folder", "run_prefix", "stage_prefix"]

I = TypeVar("I")  # noqa: E741
C = TypeVar("C")
O = TypeVar("O")  # noqa: E741

LEVELS = ("debug", "info", "warning", "error")


def run_prefix(workflow_id: str) -> str:
    """The blob key prefix of every file of a run: its id, percent-encoded, or where
    that is no key segment (``.``, ``..``, a ``~``, over 200 characters) a digest of
    it, marked by a ``#`` that an encoded id never holds."""
    segment = quote(workflow_id, safe="")
    try:
        check_key(segment)
    except InvalidArgumentError:
        segment = "#" + hashlib.sha256(workflow_id.encode()).hexdigest()
    return f"runs/{segment}/"


def stage_prefix(workflow_id: str, stage_id: str, attempt: int | None = None) -> str:
    """The blob key prefix of a stage's files (of one attempt, or of all)."""
    base = f"{run_prefix(workflow_id)}stages/{stage_id}/"
    return base if attempt is None else f"{base}{attempt}/"


def place_folder(where: str) -> str:
    """The folder, inside a stage attempt's, of the files of a pipeline called from the
    workflow's code `where` (``process/[2]``): none for the run's own pipeline."""
    return f"at-{hashlib.sha256(where.encode()).hexdigest()[:16]}/" if where else ""


def stage_id_of(stage: object, call: str, example: str) -> str:
    """The id of `stage` (a Stage or an id). Anything else failed with an AttributeError
    naming no stage: the output model a stage gives (``ctx.require(Summary)``) the likeliest."""
    if isinstance(stage, str):
        return stage
    if isinstance(stage, Stage):
        return stage.id
    hint = ""
    if isinstance(stage, type) and issubclass(stage, BaseModel):
        hint = f"{stage.__name__} is a model, not a stage: pass the stage that outputs it; "
    raise InvalidArgumentError(
        f"{call} takes a stage or a stage id, got {stage!r}; {hint}e.g. "
        f"{example.format('summarize')} or {example.format(repr('summarize'))}"
    )


class Artifacts:
    """A stage's files in the blob store, under its run, stage and attempt.

    A rerun of the stage starts with none (its attempt's folder is new); the
    files of earlier attempts are removed after the rerun is recorded.
    """

    def __init__(
        self, wf: Workflow, stage_id: str, attempts: Callable[[str], int], *, place: str = ""
    ) -> None:
        self._wf = wf
        self._stage = stage_id
        self._attempts = attempts  # stage id -> the attempt whose files count
        self._place = place  # the folder of the pipeline call, when not the run's own

    def _folder(self, stage: Stage[Any, Any, Any] | str | None) -> str:
        sid = (
            self._stage
            if stage is None
            else stage_id_of(stage, "stage= of ctx.artifacts", "stage={}")
        )
        at = stage_prefix(self._wf.workflow_id, sid, self._attempts(sid))
        return f"{at}{self._place}files/"

    def _key(self, name: str, stage: Stage[Any, Any, Any] | str | None) -> tuple[str, bool]:
        """The blob key of `name`, and whether it is its digest (see `_DIGEST`)."""
        folder = self._folder(stage)
        plain = _name_key(name)
        if plain is not None:
            with contextlib.suppress(InvalidArgumentError):  # a key over 1000 characters
                return check_key(folder + plain), False
        return f"{folder}{_DIGEST}{hashlib.sha256(name.encode()).hexdigest()}", True

    async def put(self, name: str, data: bytes | str | Any) -> str:
        """Store `data` (bytes, text, or JSON data) as `name`; its blob key."""
        key, digest = self._key(name, None)
        body = _as_bytes(data, name)
        if digest:  # the name first: a file is never listed without it
            await self._wf.blobs.put(key + _NAMED, name.encode())
        await self._wf.blobs.put(key, body)
        return key

    async def get(self, name: str, *, stage: Stage[Any, Any, Any] | str | None = None) -> bytes:
        """The bytes of `name` (of this stage, or of an earlier `stage`)."""
        found = await self._wf.blobs.get(self._key(name, stage)[0])
        if found is None:
            raise InvalidArgumentError(
                f"no artifact {name!r} in stage {stage or self._stage!r} of run "
                f"{self._wf.workflow_id!r}; list them with ctx.artifacts.list()"
            )
        return bytes(found)

    async def get_json(self, name: str, *, stage: Stage[Any, Any, Any] | str | None = None) -> Any:
        return json.loads(await self.get(name, stage=stage))

    async def list(self, *, stage: Stage[Any, Any, Any] | str | None = None) -> list[str]:
        """The names of the artifacts (of this stage, or of an earlier `stage`)."""
        prefix = self._folder(stage)
        names = []
        for key in await self._wf.blobs.list(prefix):
            end = key[len(prefix) :]
            if not end.startswith(_DIGEST):
                names.append(unquote(end))
            elif not end.endswith(_NAMED) and (told := await self._wf.blobs.get(key + _NAMED)):
                names.append(bytes(told).decode())
        return names

    async def delete(self, name: str) -> bool:
        key, digest = self._key(name, None)
        deleted = bool(await self._wf.blobs.delete(key))
        if digest:
            await self._wf.blobs.delete(key + _NAMED)
        return deleted


# what a blob key segment holds as itself; '%' is not among them: it encodes the rest
_KEPT = "-_.:@#[]=+/"
# the key of a name no plain key holds (a part over 200 characters once encoded, one
# starting '.tmp-', a key over 1000): a digest of it, marked by a '%' that no
# encoded name has without two hex digits after it; the name is kept beside it
_DIGEST = "%-"
_NAMED = "=name"


def _name_key(name: str) -> str | None:
    """An artifact's name as the end of a blob key: any text (a file's name in any
    language, with spaces) percent-encoded, as a run id is; a name made only of what a
    key holds as itself, without '%', stays as it is (as artifacts were always stored).
    None where that is no key (the name's digest stands for it)."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"an artifact name is a str, got {type(name).__name__}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidArgumentError(
            f"artifact name {name!r} cannot name a file: it has an empty part, '.' or '..'; "
            "use '/'-separated parts of any other text, e.g. 'pages/3.txt' or "
            "'Bericht für März.pdf'"
        )
    if not name.isascii():
        try:  # a file name os.listdir() decoded with surrogates: a bare UnicodeEncodeError
            name.encode()
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(
                f"artifact name {name!r} is not text: {e.object[e.start : e.end]!r} stands "
                "for a byte that is no UTF-8 (os.listdir() gives such a name for a file "
                "named in another encoding); name it in text, e.g. "
                "os.fsencode(name).decode('utf-8', 'replace')"
            ) from None
    key = quote(name, safe=_KEPT).replace("~", "%7E")  # quote() never encodes '~'
    try:
        return check_key(key)
    except InvalidArgumentError:
        return None


def _as_bytes(data: Any, name: str) -> bytes:
    """An artifact's bytes; JSON data written as tether writes values (a model, a
    datetime), and NaN refused, not written as JSON no reader takes."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    return dump_json(data, what=f"artifact {name!r}").encode()


class StageContext(Generic[I, C]):
    """The context of one stage execution: its input, config and run."""

    def __init__(
        self,
        wf: Workflow,
        stage: Stage[Any, Any, Any],
        *,
        input: I,
        config: C,
        group: int,
        attempt: int,
        outputs: Callable[[str], tuple[bool, Any]],
        attempts: Callable[[str], int],
        written: Callable[[], Awaitable[int]],
        groups: Mapping[str, int],
        place: str = "",
        where: str = "",
    ) -> None:
        self.workflow = wf
        self.stage = stage
        self.stage_id = stage.id
        self.input = input
        self.config = config
        self.group = group
        self.attempt = attempt
        self.artifacts = Artifacts(wf, stage.id, attempts, place=place)
        self._outputs = outputs
        self._groups = groups  # stage id -> its group, for each stage of the pipeline
        self._written = written  # how many numbered log/progress events are recorded
        self._where = where  # where the pipeline was called from, when not the run itself
        self._seq = 0

    @property
    def run_id(self) -> str:
        return self.workflow.workflow_id

    @property
    def ai(self) -> WorkflowAI:
        """The run's AI helper; calls made here are named (and summed) under this stage."""
        return self.workflow.ai

    # -- earlier outputs ----------------------------------------------------------------

    @overload
    def require(self, stage: Stage[Any, O, Any]) -> O: ...
    @overload
    def require(self, stage: str) -> Any: ...

    def require(self, stage: Stage[Any, Any, Any] | str) -> Any:
        """The output of an earlier stage; an error if it did not run before this one."""
        sid = stage_id_of(stage, "ctx.require", "ctx.require({})")
        found, value = self._outputs(sid)
        if not found:
            raise InvalidArgumentError(self._not_before(sid))
        return value

    def _not_before(self, sid: str) -> str:
        """Why `require(sid)` has no output, and what to change."""
        me = f"stage {self.stage_id!r} requires the output of {sid!r}"
        n = self._groups.get(sid)
        if n is None:
            guess = did_you_mean(sid, self._groups)
            known = ", ".join(map(repr, self._groups))
            return (
                f"{me}, which is no stage of this pipeline; {guess}check the spelling: "
                f"its stages are {known}"
            )
        if n >= self.group:
            when = "beside it, in the same group" if n == self.group else f"later, in group {n}"
            return (
                f"{me}, which runs {when} (this stage is in group {self.group}): move "
                f"{sid!r} to a group before this one, and declare it with "
                f"dependencies=[{sid!r}] so the pipeline refuses such an order when built; "
                "or read it with ctx.optional if this stage can do without it"
            )
        return (
            f"{me}, a stage of an earlier group that gave no output in this run; "
            "read it with ctx.optional if this stage can do without it"
        )

    @overload
    def optional(self, stage: Stage[Any, O, Any]) -> O | None: ...
    @overload
    def optional(self, stage: str) -> Any: ...

    def optional(self, stage: Stage[Any, Any, Any] | str) -> Any:
        """The output of an earlier stage, or None if it did not run."""
        found, value = self._outputs(stage_id_of(stage, "ctx.optional", "ctx.optional({})"))
        return value if found else None

    # -- logs and progress -------------------------------------------------------------------

    async def log(self, level: Literal["debug", "info", "warning", "error"], message: str,
                  **fields: Any) -> None:  # fmt: skip
        """Record a log line of this stage as a run event (`stage.log`). The level is
        read in any case, ``warn`` as ``warning``, as other engines spell them ("INFO",
        "WARN"): code ported from them failed its stage on its first log line."""
        said = level.lower() if isinstance(level, str) else level
        said = "warning" if said == "warn" else said
        if said not in LEVELS:
            raise InvalidArgumentError(f"log level must be one of {LEVELS}, got {level!r}")
        self._check_fields(fields)
        await self._event("stage.log", str(message), {"level": said, "fields": fields})

    def _check_fields(self, fields: dict[str, Any]) -> None:
        """Refuse a log field JSON cannot hold, naming the stage and the field. Refused
        when the event was written, the error named only "event 'stage.log' detail" at
        ``$.fields.x``, and told the stage's code to return JSON data."""
        what = f"field of ctx.log in stage {self.stage_id!r}"
        try:
            to_json_data(fields, what=what)
        except NotSerializableError as exc:
            raise NotSerializableError(
                what, exc.offending_type or object, exc.path,
                fix="Log it as text (x=str(value)) or as JSON data (str, numbers, bool, None, "
                "lists, dicts, a pydantic model)",
            ) from None  # fmt: skip
        dump_json(fields, what=what)  # a NaN, a NUL: refused naming the field too

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far this stage is (0.0 to 1.0) as a run event (`stage.progress`)."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise InvalidArgumentError(f"progress is a fraction from 0 to 1, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise InvalidArgumentError(
                f"progress is a fraction from 0 to 1, got {fraction!r}; for 40 of 100 pass 0.4"
            )
        if message is not None and not isinstance(message, str):
            raise InvalidArgumentError(
                f"progress message is text, got {message!r}; pass e.g. f'{{done}} of {{total}}'"
            )
        await self._event("stage.progress", message, {"fraction": float(fraction)})

    async def _event(self, kind: str, message: str | None, detail: dict[str, Any]) -> None:
        at = {"at": self._where} if self._where else {}
        detail = {"stage": self.stage_id, "attempt": self.attempt, **at, **detail}
        if in_step():  # written with the step: exactly when the step is recorded
            # as `log_event_now` writes it: json.dumps(default=str) wrote a model as
            # "x=1", a datetime unlike ISO, and a NaN that PostgreSQL refused at commit
            attach(NewEvent(kind, message, dump_json(detail, what=f"event {kind!r} detail")))
            return
        self._seq += 1
        if self._seq <= await self._written():
            return  # written by an earlier drive that ran this code before
        await self.workflow.log_event_now(kind, message, {**detail, "seq": self._seq})
