"""Dependencies point one way: the kernel sits on ports, `App` is a facade on top.

Read from the source (every import, type-only ones included), so that a new
import that points upward fails here before the layers above are built on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tether

SRC = Path(tether.__file__).parent

# modules above the App facade may import it; nothing else may
ABOVE_APP = {
    "tether",
    "tether.app",
    "tether.cli",
    "tether.server",
    "tether.testing",
    "tether.worker",
    "tether.agents",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("tether"):
                found.add(target)
                for alias in node.names:  # `from . import x` may name a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tether"))
    return found


GRAPH = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> str:
    for top in ABOVE_APP:
        if module == top or (module.startswith(top + ".") and top != "tether"):
            return top
    return module


def test_nothing_below_the_app_imports_it() -> None:
    offenders = {
        module: sorted(i for i in imports if i == "tether.app" or i.startswith("tether.app."))
        for module, imports in GRAPH.items()
        if _layer(module) not in ABOVE_APP and module.startswith("tether")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_kernel_depends_on_ports_not_on_the_runner_or_the_workflow_context() -> None:
    upward = {"tether.app", "tether._runner", "tether._workflow", "tether._waits", "tether.worker"}
    offenders = {
        module: sorted(i for i in imports if any(i == u or i.startswith(u + ".") for u in upward))
        for module, imports in GRAPH.items()
        if module.startswith("tether.kernel")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_core_modules_import_no_cycle() -> None:
    """No chain of imports leads from a module back to itself (packages aside: a
    package's __init__ re-exports its own modules by design)."""
    modules = {m for m in GRAPH if m.startswith("tether.")}

    def deps(m: str) -> set[str]:
        return {
            d for d in GRAPH.get(m, set()) if d in modules and not m.startswith(d + ".") and d != m
        }

    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(deps(m)):
            if state.get(d) == 1:
                cycles.append([*path[path.index(d) :], d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert cycles == []
