"""What `tether run` is pointed at: a workflow function, its JSON input and state.

Every failure here is the user's to fix (a path, a name, a typo in the JSON),
so each raises `UsageError` saying what was wrong and how to fix it; the
command turns that into exit code 2 and one line on stderr, not a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import keyword
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from ..app import App
from ..definition import WorkflowDef
from ..errors import InvalidArgumentError
from ..serde import MAX_DEPTH

__all__ = [
    "UsageError",
    "load_target",
    "module_app",
    "not_an_app",
    "parse_json",
    "validate_input",
    "workflow_def",
]


class UsageError(Exception):
    """Bad usage or input; the message says how to fix it (exit code 2)."""


def load_target(target: str, *, app: bool = False) -> tuple[Any, ModuleType]:
    """The object named by ``path/to/file.py:NAME`` or ``package.module:NAME``, and
    the module it was found in. With `app` (`--app`), a missing name's hint lists the
    Apps there, not the async functions (a workflow is no App)."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        what, eg = ("App", "APP") if app else ("function", "FUNC")
        raise UsageError(
            f"{target!r} names no {what}: give FILE.py:{eg} (a path to a Python file) "
            f"or MODULE:{eg} (an importable module), e.g. "
            f"{'flows.py:app' if app else 'flows.py:main'}"
        )
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    module = _load_file(where) if is_file else _import_module(where)
    try:
        return getattr(module, name), module
    except AttributeError:
        if app:
            raise UsageError(f"{where} has no {name!r}; {_apps_there(module, where)}") from None
        found = _async_functions(module)
        hint = (
            f"async functions there: {', '.join(found)}"
            if found
            else "it defines no async functions; a workflow is `async def f(wf)` or "
            "`async def f(wf, input)`"
        )
        raise UsageError(f"{where} has no {name!r}; {hint}") from None


def workflow_def(target: str, found: Any, module: ModuleType) -> WorkflowDef:
    """The workflow `target` names. Naming the App (`flows.py:app`, as `worker` takes
    it) or anything else that is not a workflow said only "got <tether.app.App object
    at 0x7f...>", with no word of which names would do."""
    try:
        return WorkflowDef.of(found)
    except InvalidArgumentError:
        if callable(found) and not isinstance(found, type):
            raise
        names = _async_functions(module)
        there = f"async functions there: {', '.join(names)}" if names else "it has none"
        raise UsageError(
            f"{target} is an object of type {type(found).__name__}, not a workflow: name an async "
            f"function, `async def f(wf)` or `async def f(wf, input)` ({there})"
        ) from None


def _load_file(where: str) -> ModuleType:
    """Import a file under a unique name, its directory first on sys.path (sibling imports)."""
    path = Path(where)
    if not path.is_file():
        what = "is a directory, not a Python file" if path.is_dir() else "does not exist"
        raise UsageError(
            f"no such file: {where} {what} (relative to {Path.cwd()}); "
            "check the path before the ':'"
        )
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(_module_name(path), path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {where} as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # get_type_hints and pydantic resolve names through it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[spec.name]
        raise UsageError(
            f"cannot load {where}: syntax error{_in_other(exc, path)} at line {exc.lineno}: "
            f"{exc.msg}"
        ) from exc
    except SystemExit as exc:
        del sys.modules[spec.name]
        raise UsageError(f"cannot load {where}: {_exited(exc)}") from None
    except Exception as exc:
        del sys.modules[spec.name]
        raise UsageError(
            f"cannot load {where}: importing it raised {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    return module


def _exited(exc: SystemExit) -> str:
    """What to say of a module that calls `sys.exit` (or `parser.parse_args()`, on
    tether's own arguments) as it is imported: that ended the command with the
    module's code (3 read as "no such run") and often no word at all."""
    return (
        f"importing it called sys.exit({exc.code!r}); "
        'put its script code under `if __name__ == "__main__":`'
    )


def _module_name(path: Path) -> str:
    """What the file is imported as: its stem (``flows``), as ``python -c "import flows"``
    would name it, so the classes it defines are recorded as ``flows:Quote`` and found
    again by any later process that loads the file (a worker, a resume), which keeps
    replayed values and errors of their own class. A unique name where the stem would
    shadow another module (``queue.py``) or is no identifier."""
    stem, here = path.stem, path.resolve()
    if stem.isidentifier() and not keyword.iskeyword(stem):
        loaded = sys.modules.get(stem)
        if loaded is not None:
            origin = getattr(loaded, "__file__", None)
        else:
            try:
                found = importlib.util.find_spec(stem)  # its directory is first on sys.path
            except (ImportError, ValueError):
                found = None
            origin = None if found is None else found.origin
        if origin is not None and Path(origin).resolve() == here:
            return stem
    return f"_tether_{uuid.uuid4().hex[:12]}"


def _import_module(where: str) -> ModuleType:
    sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: modules beside you import
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (where == exc.name or where.startswith(exc.name + ".")):
            raise UsageError(
                f"no module named {where!r} (searched the working directory and sys.path); "
                "install its package, run from its directory, or give FILE.py:FUNC"
            ) from exc
        raise UsageError(
            f"cannot import module {where!r} ({_origin(where)}): {exc} "
            "(a module it imports is missing)"
        ) from exc
    except SyntaxError as exc:
        raise UsageError(
            f"cannot import module {where!r}: syntax error in {exc.filename} "
            f"at line {exc.lineno}: {exc.msg}"
        ) from exc
    except SystemExit as exc:
        raise UsageError(
            f"cannot import module {where!r} ({_origin(where)}): {_exited(exc)}"
        ) from None
    except Exception as exc:
        raise UsageError(
            f"cannot import module {where!r} ({_origin(where)}): importing it raised "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc


def _origin(where: str) -> str:
    """The file a module is loaded from, for an error message about importing it."""
    module = sys.modules.get(where)
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(where)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
    return f"file {origin}" if origin else "file unknown"


def _in_other(exc: SyntaxError, path: Path) -> str:
    """` in OTHER.py` when the syntax error is in a file the user's file imports."""
    if exc.filename and Path(exc.filename).resolve() != path.resolve():
        return f" in {exc.filename}"
    return ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or "(no message)"


def module_app(module: ModuleType) -> Any:
    """The tether App a module defines at its top level (the first, by name order of
    definition), or None."""
    for value in vars(module).values():
        if isinstance(value, App):
            return value
    return None


def not_an_app(app_ref: str, found: Any, module: ModuleType) -> str:
    """Why `found`, named by `--app`, will not do, and which names would."""
    kind = type(found).__name__
    what = f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"
    if found is None or isinstance(found, int | float | str):  # a value: show it, cut short
        shown = repr(found) if len(repr(found)) <= 40 else repr(found)[:37] + "..."
        what = f"{shown} ({what})"
    where = app_ref.rpartition(":")[0]
    return f"{app_ref} is {what}, not a tether.App; {_apps_there(module, where)}"


def _apps_there(module: ModuleType, where: str) -> str:
    """The hint for `--app`: the Apps `module` defines, or how to make one."""
    names = [n for n, v in vars(module).items() if isinstance(v, App) and not n.startswith("_")]
    if names:
        return f"Apps there: {', '.join(names)} (e.g. --app {where}:{names[0]})"
    return (
        "it defines no tether.App; make one at its top level, e.g. "
        "`app = tether.App()` with `@app.workflow` on its workflows, and pass --app "
        f"{where}:app"
    )


def _async_functions(module: ModuleType) -> list[str]:
    return sorted(
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and inspect.iscoroutinefunction(v)
        and getattr(v, "__module__", None) == module.__name__
    )


def parse_json(text: str | None, what: str) -> Any:
    """JSON from the command line, or from a file when `text` is ``@path``."""
    if text is None:
        return None
    if text.startswith("@"):
        text = _read_file(Path(text[1:]), what)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            f"""pass JSON, e.g. --{what} '{{"n": 1}}' (strings need double quotes), """
            f"or --{what} @file.json"
        ) from exc
    except _NotJSONNumber as exc:
        raise UsageError(
            f"{what} contains {exc}, which is not JSON (it has no NaN or infinity); "
            f"use a finite number, null or a string in --{what}"
        ) from None
    except RecursionError:
        raise UsageError(
            f"{what} is nested too deeply to parse; tether stores values up to "
            f"{MAX_DEPTH} levels deep: flatten the JSON given to --{what}"
        ) from None
    except ValueError as exc:  # an integer literal longer than Python converts
        raise UsageError(
            f"{what} has a number too long to read ({exc}); pass it as a string in --{what}"
        ) from None


def _read_file(path: Path, what: str) -> str:
    """The text of an ``@path`` argument. Not only a regular file: ``@/dev/stdin`` and
    a shell's ``@<(jq ...)`` (a pipe, /dev/fd/63) were refused as "not found"."""
    if not path.exists():
        raise UsageError(
            f"{what} file not found: {path} (relative to {Path.cwd()}); "
            f"--{what} @FILE reads JSON from FILE"
        )
    if path.is_dir():
        raise UsageError(f"{what} file {path} is a folder; --{what} @FILE reads JSON from FILE")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc}") from exc


class _NotJSONNumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity; JSON (and tether's store) has neither."""
    raise _NotJSONNumber(name)


def validate_input(defn: WorkflowDef, value: Any) -> Any:
    """`value` as the workflow's declared input type, so it gets models, not dicts."""
    try:
        return defn.coerce_input(value)
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from exc
