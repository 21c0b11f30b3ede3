"""`Pipeline`: stages in groups, checked when built, run as one durable workflow.

``Pipeline("doc", input=Doc, output=Report).pipe(extract).parallel([a, b]).pipe(c)``
makes groups 1, 2, 3. Group 1 gets the pipeline's input, group N the output
of group N-1 (for a parallel group, a mapping by stage id), and the
pipeline's output is the last group's. Each builder call returns a new
pipeline, checked at once: duplicate ids, dependencies that do not run
earlier and models that do not chain are refused there, not at run time.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .._fanout import ITEM_PATH
from .._run_state import NAME_SCOPE
from ..ai import Budget
from ..definition import DEF_ATTR, WorkflowDef
from ..errors import explain_validation
from ..serde import to_json_data
from ._chain import mapping_misfit, misfit, type_name
from ._config_keys import dropped_key
from ._errors import PipelineError, did_you_mean
from ._execute import Execution
from ._run_input import PipelineRun
from ._stage import Stage

__all__ = ["Pipeline", "PipelineRun", "built_stage"]

# the pipelines this process has built, by name: a cancel finds the stage of one that a
# workflow's code called (the run's workflow is not the pipeline) by its recorded name
_BUILT: dict[str, weakref.WeakSet[Pipeline[Any, Any]]] = {}


def built_stage(pipeline: str | None, stage_id: str) -> Stage[Any, Any, Any] | None:
    """Stage `stage_id` of the pipeline named `pipeline` that this process has built
    (None if none has it, or several with different stages of that id: which one a
    run called cannot be told)."""
    found = {id(s): s for p in _BUILT.get(pipeline or "", ()) if (s := p.stages.get(stage_id))}
    return next(iter(found.values())) if len(found) == 1 else None


I = TypeVar("I", bound=BaseModel)  # noqa: E741
O = TypeVar("O", bound=BaseModel)  # noqa: E741


_AT_REST = {"pipeline", "input", "config"}


class Pipeline(Generic[I, O]):
    """A pipeline of stages; register it with ``app.register(pipeline)``, run it with
    ``app.run(pipeline, input, config={stage_id: {...}})``."""

    def __init__(
        self,
        name: str,
        *,
        input: type[I] | None = None,
        output: type[O] | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
        description: str | None = None,
        timeout: float | None = None,
        budget: Budget | dict[str, Any] | None = None,
        inline_limit: int = 64 * 1024,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            # None was taken, and the pipeline registered under its class name "Pipeline"
            raise PipelineError(
                f"a pipeline's name must be a non-empty str, got {name!r}; it names the "
                "workflow its runs are of, e.g. tether.Pipeline('doc-processor', input=Doc)"
            )
        for what, tp in (("input", input), ("output", output)):
            if tp is not None and not (isinstance(tp, type) and issubclass(tp, BaseModel)):
                raise PipelineError(f"pipeline {name!r}: {what} must be a pydantic model class")
        if isinstance(inline_limit, bool) or not isinstance(inline_limit, int) or inline_limit < 0:
            raise PipelineError(f"inline_limit must be bytes >= 0, got {inline_limit!r}")
        self.name = name
        self.input = input
        self.output = output
        self.version = version
        self.description = description
        self.inline_limit = inline_limit  # larger stage outputs go to the blob store
        self.groups: tuple[tuple[Stage[Any, Any, Any], ...], ...] = ()
        # a str is left for `WorkflowDef.make` to refuse: tuple("1.0") was ('1', '.', '0'),
        # and the runs of version "1.0" were refused by the release listing it
        one = isinstance(compatible, str) or not isinstance(compatible, Iterable)
        kept = compatible if one else tuple(compatible)
        self._options = (kept, timeout, Budget.of(budget))
        setattr(self, DEF_ATTR, self.definition())

    def definition(self) -> WorkflowDef:
        """This pipeline as a workflow definition (its name, version and options)."""
        compatible, timeout, budget = self._options
        return WorkflowDef.make(
            self,
            name=self.name,
            version=self.version,
            compatible=compatible,
            timeout=timeout,
            budget=budget,
        )

    def __repr__(self) -> str:
        shown = " -> ".join("+".join(s.id for s in g) for g in self.groups)
        return f"<Pipeline {self.name!r}: {shown or 'no stages'}>"

    # -- building ----------------------------------------------------------------------

    def pipe(self, stage: Stage[Any, Any, Any]) -> Pipeline[I, O]:
        """A new pipeline running `stage` after this one's groups."""
        if isinstance(stage, list | tuple) and all(isinstance(s, Stage) for s in stage):
            # refused as "not a stage; declare it with @tether.stage", of declared stages
            raise PipelineError(
                f"pipeline {self.name!r}: pipe takes one stage, got {list(stage)!r}; for "
                "stages side by side use .parallel([...]), for stages in a row one "
                ".pipe(stage) each"
            )
        return self._with((stage,))

    def parallel(self, stages: Sequence[Stage[Any, Any, Any]]) -> Pipeline[I, O]:
        """A new pipeline running `stages` side by side after this one's groups. An
        empty generator (``s for s in stages if ...``) is refused as an empty list is:
        taken, its group of none ran, and failed the run with "max_parallel must be >= 1"."""
        group = () if isinstance(stages, Stage | str) else tuple(stages)
        if not group:
            raise PipelineError(
                f"pipeline {self.name!r}: parallel takes a non-empty list of stages, "
                f"e.g. .parallel([summarize, keywords]); got {stages!r}"
            )
        return self._with(group)

    def _with(self, group: tuple[Stage[Any, Any, Any], ...]) -> Pipeline[I, O]:
        for s in group:
            if not isinstance(s, Stage):
                raise PipelineError(
                    f"pipeline {self.name!r}: {s!r} is not a stage; declare it with "
                    "@tether.stage(id=..., output=...)"
                )
        new: Pipeline[I, O] = Pipeline.__new__(Pipeline)
        new.__dict__.update(self.__dict__)
        new.groups = (*self.groups, group)
        new.check_group(len(new.groups))
        setattr(new, DEF_ATTR, new.definition())
        _BUILT.setdefault(new.name, weakref.WeakSet()).add(new)
        return new

    def check_group(self, n: int) -> None:
        """Refuse group `n` (1-based) if it cannot follow the groups before it."""
        group, earlier = self.groups[n - 1], self.groups[: n - 1]
        seen = {s.id for g in earlier for s in g}
        for s in group:
            if s.id in seen or sum(1 for t in group if t.id == s.id) > 1:
                raise PipelineError(f"pipeline {self.name!r}: stage id {s.id!r} appears twice")
            for dep in s.dependencies:
                if dep not in seen:
                    raise PipelineError(
                        f"pipeline {self.name!r}: stage {s.id!r} depends on {dep!r}, which does "
                        "not run in an earlier group; pipe it before"
                    )
            if s.mode == "batch" and s.check_fn is None:
                raise PipelineError(
                    f"batch stage {s.id!r} has no check; pass check= or decorate one with "
                    f"@{s.id.replace('-', '_')}.check"
                )
            why = None if s.input is None else self._misfit(earlier, s.input)
            if why is not None:
                raise PipelineError(
                    f"pipeline {self.name!r}: stage {s.id!r} takes {type_name(s.input)}, but "
                    f"{self._source_name(earlier)} does not fit it: {why}; chain models that "
                    "fit, or drop input= and read earlier outputs with ctx.require(...)"
                )

    def _misfit(
        self, earlier: Sequence[Sequence[Stage[Any, Any, Any]]], target: type[BaseModel]
    ) -> str | None:
        """Why what the last of the `earlier` groups gives cannot be read as `target`."""
        if not earlier:
            return None if self.input is None else misfit(self.input, target)
        last = earlier[-1]
        if len(last) == 1:
            return misfit(last[0].output, target)
        return mapping_misfit({s.id: s.output for s in last}, target)

    def _source_name(self, earlier: Sequence[Sequence[Stage[Any, Any, Any]]]) -> str:
        if not earlier:
            return f"the pipeline input {getattr(self.input, '__name__', None)}"
        last = earlier[-1]
        if len(last) == 1:
            return f"the output {last[0].output.__name__} of stage {last[0].id!r}"
        return f"the outputs of the parallel group {[s.id for s in last]}"

    def check(self) -> None:
        """Refuse a pipeline that cannot run: no stages, or a last group that does not
        fit the declared output."""
        if not self.groups:
            # said so too of a pipeline whose .pipe() result was dropped, not assigned
            raise PipelineError(
                f"pipeline {self.name!r} has no stages; add them with .pipe() or .parallel(), "
                "which return a new pipeline: keep it, e.g. p = p.pipe(extract)"
            )
        why = None if self.output is None else self._misfit(self.groups, self.output)
        if why is not None:
            raise PipelineError(
                f"pipeline {self.name!r}: its output {type_name(self.output)} does not fit "
                f"{self._source_name(self.groups)}: {why}"
            )

    @property
    def stages(self) -> dict[str, Stage[Any, Any, Any]]:
        return {s.id: s for g in self.groups for s in g}

    def group_of(self, stage_id: str) -> int:
        """The 1-based group `stage_id` runs in."""
        for n, g in enumerate(self.groups, 1):
            if any(s.id == stage_id for s in g):
                return n
        known = ", ".join(self.stages) or "none"
        meant = did_you_mean(stage_id, self.stages)
        raise PipelineError(
            f"pipeline {self.name!r} has no stage {stage_id!r}; {meant}(stages: {known})"
        )

    # -- binding a run's input and config ---------------------------------------------------

    def bind(
        self, input: Any, config: Mapping[str, Any] | None, *, given: bool = True
    ) -> PipelineRun:
        """The run input for `input` and `config` (one mapping by stage id), validated:
        a bad value fails here, naming the stage and the field, before anything runs.
        A key a stage's config model does not declare is refused when the config is
        `given` by a caller (a misspelt ``max_len`` ran with the default); a stored
        run's config keeps a field a compatible release has since dropped."""
        self.check()
        if config is not None and not isinstance(config, Mapping):
            raise PipelineError(
                f"config must be a mapping by stage id, e.g. {{'extract': {{...}}}}; got {config!r}"
            )
        by_stage = dict(config or {})
        stages = self.stages
        unknown = sorted(set(by_stage) - set(stages))
        if unknown:
            raise PipelineError(
                f"config names {unknown}, which are not stages of pipeline {self.name!r}; "
                f"{did_you_mean(unknown[0], stages)}(stages: {', '.join(stages)})"
            )
        if given:
            for sid, value in by_stage.items():
                _check_fields(stages[sid], value)
        configs = {sid: self._config(s, by_stage.get(sid)) for sid, s in stages.items()}
        return PipelineRun(pipeline=self.name, input=self._input(input), config=configs)

    def _input(self, value: Any) -> Any:
        if self.input is None:
            # as JSON data, as every later drive reads it back from the run's record: kept
            # as given (a model), a stage read `ctx.input.url` in the first drive and
            # failed on a dict once the run resumed after a wait or a crash
            return to_json_data(value, what=f"the input of pipeline {self.name!r}")
        try:
            model = self.input.model_validate(value)
            return to_json_data(model, what=f"the input of pipeline {self.name!r}")
        except ValidationError as exc:
            raise PipelineError(
                f"the input of pipeline {self.name!r} does not fit {self.input.__name__}: "
                f"{explain_validation(exc)}"
            ) from None

    def _config(self, s: Stage[Any, Any, Any], value: Any) -> dict[str, Any]:
        if s.config is None:
            if value:
                raise PipelineError(f"stage {s.id!r} takes no config (it declares no config=)")
            return {}
        try:
            model = s.config.model_validate(value or {})
        except ValidationError as exc:
            # none given: say where it goes (a call from a workflow's code has no config=)
            how = "" if value else (
                f"; give it in the run's config: app.run(pipeline, input, config={{{s.id!r}: "
                "{...}}), or from a workflow's code, in place of the input, bound = "
                f"pipeline.bind(input, {{{s.id!r}: {{...}}}}): await pipeline(wf, bound) "
                "or await wf.child(pipeline, bound)"
            )  # fmt: skip
            raise PipelineError(
                f"config of stage {s.id!r} does not fit {s.config.__name__}: "
                f"{explain_validation(exc)}{how}"
            ) from None
        return dict(model.model_dump(mode="json", by_alias=True))

    def __tether_input__(self, value: Any) -> PipelineRun:
        """The run input for what a run was started with (see `WorkflowDef.coerce_input`)."""
        if isinstance(value, dict) and set(value) == _AT_REST and value["pipeline"] == self.name:
            value = PipelineRun.model_validate(value)  # as stored, or passed on by a command
        if isinstance(value, PipelineRun):
            # a run started before a compatible release removed or renamed a stage, or
            # dropped a stage's config model, keeps that stage's config: it no longer
            # applies, and must not fail the resume
            stages = self.stages
            kept = {sid: c for sid, c in value.config.items()
                    if sid in stages and stages[sid].config is not None}  # fmt: skip
            return self.bind(value.input, kept, given=False)
        return self.bind(value, None)

    @property
    def __tether_returns__(self) -> Any:
        """The type a run's output comes back as (see `serde.return_type_of`)."""
        if self.output is not None:
            return self.output
        last = self.groups[-1] if self.groups else ()
        return last[0].output if len(last) == 1 else None

    @property
    def __tether_returns_said__(self) -> str | None:
        """How to make a recorded output fit again, said in the pipeline's terms: it has
        no return annotation, and "declare a return type" sent the reader to find one
        (None when its output has no type: a parallel last group, no output=)."""
        if self.output is not None:
            now = type_name(self.output)
        elif self.groups and len(self.groups[-1]) == 1:
            last = self.groups[-1][0]
            now = f"its last stage {last.id!r}'s {last.output_from}, {type_name(last.output)}"
        else:
            return None
        return f"give pipeline {self.name!r} an output= (now: {now}) that the recorded value fits"

    # -- running -------------------------------------------------------------------------

    async def __call__(self, wf: Any, run: Any = None) -> Any:
        try:
            bound = run if isinstance(run, PipelineRun) else self.__tether_input__(run)
        except PipelineError as exc:
            if not (isinstance(run, dict) and set(run) == _AT_REST):
                raise  # a new input, not one the run recorded
            raise PipelineError(
                f"{exc}; run {wf.workflow_id!r} recorded its input and config when it "
                "started, under an earlier release of the pipeline: make this release take "
                "them (give a new field a default, accept a value it no longer reads), or "
                "take that release out of compatible=[...] so its runs resume where it runs"
            ) from None
        self._check_embedded(wf)
        return await Execution(self, wf, bound).run()

    def _check_embedded(self, wf: Any) -> None:
        """Refuse a call from another run's code of a pipeline declaring `budget=` or
        `timeout=`: they are options of the pipeline's own runs, and the calling run's
        hold there instead. Taken, the pipeline's cap was silently ignored: a stage
        spent $0.012 past its pipeline's max_usd of $0.003."""
        _, timeout, budget = self._options
        own = wf.workflow_name == self.name and not NAME_SCOPE.get() and not ITEM_PATH.get()
        if own or (timeout is None and budget is None):
            return
        which = " and ".join(
            f"{k}={v!r}" for k, v in (("budget", budget), ("timeout", timeout)) if v is not None
        )
        raise PipelineError(
            f"pipeline {self.name!r} declares {which}, which hold for runs of the pipeline; "
            f"called from the code of run {wf.workflow_id!r} (workflow {wf.workflow_name!r}) "
            "it would run under that run's budget and timeout, its own ignored. Run it as a "
            "child run, where they hold: await wf.child(pipeline, input); or give the "
            f"workflow {wf.workflow_name!r} the budget or timeout and call a pipeline built "
            "without them"
        )


def _check_fields(s: Stage[Any, Any, Any], value: Any) -> None:
    """Refuse a key `s`'s config model (or a model nested in it) would drop, unless the
    model says what to do with extra keys (``model_config = ConfigDict(extra=...)``)."""
    dropped = None if s.config is None else dropped_key(s.config, value)
    if dropped is not None:
        raise PipelineError(f"config of stage {s.id!r} has {dropped}")
