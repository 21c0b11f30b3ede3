"""Prompt rendering: strict Liquid. An unknown variable or filter is an error
(a typo such as ``{{ issue.titel }}`` must never reach the agent as text), and
every issue field is present (None when empty) so ``{% if issue.description %}``
works on a strict template. `attempt` is None on the first run, then 1, 2, ...
"""

from __future__ import annotations

from dataclasses import fields
from difflib import get_close_matches
from typing import Any

from liquid import Environment, StrictUndefined
from liquid.builtin.expressions.loop import LoopExpression
from liquid.builtin.expressions.path import Path
from liquid.exceptions import LiquidError

from ._errors import TemplateError
from ._issue import Issue

__all__ = ["CONTINUATION_PROMPT", "check_template", "continuation_prompt", "render_prompt"]

CONTINUATION_PROMPT = (
    "Continuation turn #{turn} of {max_turns}: the issue is still active. "
    "Continue your work where you left off."
)

_ENV = Environment(undefined=StrictUndefined, strict_filters=True)


def _one_line(exc: Exception) -> str:
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


def _parse(template: str) -> Any:
    """The parsed template, or the `template_parse_error` a person can act on."""
    try:
        return _ENV.from_string(template)
    except LiquidError as exc:
        raise TemplateError(
            f"the prompt template does not parse: {_one_line(exc)}{_place(exc)}",
            code="template_parse_error",
        ) from None


def _place(exc: LiquidError) -> str:
    """Where in the prompt a parse error is: its line, when Liquid knows the token; a
    block never closed is found only at the end, which names no line."""
    token = getattr(exc, "token", None)
    at, source = getattr(token, "start_index", -1), getattr(token, "source", "")
    if isinstance(at, int) and at >= 0 and isinstance(source, str) and source:
        return f" (line {source.count(chr(10), 0, at) + 1})"
    if "expected tag end" in str(exc):
        return " (a block the prompt opens is never closed: add its end tag)"
    return ""


def check_template(template: str) -> None:
    """Parse `template` now (`template_parse_error`), so a bad file fails at load; and
    refuse a name no prompt can have or a filter Liquid lacks (`template_render_error`),
    which would otherwise fail every attempt of every issue, one after another, until
    each waits for a person."""
    parsed = _parse(template)
    problem = _unknown_name(parsed, template) or _item_misuse(parsed, template)
    if problem is not None:
        raise TemplateError(f"the prompt template {problem}", code="template_render_error")


_FIELDS = tuple(f.name for f in fields(Issue))


def _unknown_name(parsed: Any, template: str) -> str | None:
    """What the template uses that rendering would refuse whatever the issue: a variable
    other than `issue` and `attempt` (locals of its own aside), a field no issue has, an
    unknown filter. None when all is known (or the analysis itself fails: it is a help)."""
    try:
        # partials are not followed: there is no file to load them from, and following
        # one raised, which let every other unknown name of the template through
        analysis = parsed.analyze(include_partials=False)
    except Exception:
        return None
    for tag in ("include", "render"):
        for span in analysis.tags.get(tag, ()):
            return (
                f"uses {{% {tag} %}} (line {_line(template, span.index)}), but a WORKFLOW.md "
                "prompt has no other templates to load; put that text in the prompt itself"
            )
    for name, uses in analysis.globals.items():
        for use in uses:
            segments = list(use.segments)
            field = segments[1] if len(segments) > 1 else None
            if (name == "attempt" and field is None) or (
                name == "issue" and (not isinstance(field, str) or field in _FIELDS)
            ):
                continue
            if name == "attempt":
                return (
                    f"uses attempt.{field} (line {_line(template, use.span.index)}), but "
                    "attempt is a number (None on the first run) with nothing in it; use attempt"
                )
            what = f"issue.{field}" if name == "issue" else str(name)
            # the whole path is compared: `isue.title` means issue.title, not issue.id
            used = f"{name}.{field}" if isinstance(field, str) else str(name)
            close = get_close_matches(used, [f"issue.{f}" for f in _FIELDS] + ["attempt"], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return (
                f"uses {what} (line {_line(template, use.span.index)}), which no issue has; "
                f"{hint}(known: issue.<{', '.join(_FIELDS)}>, attempt)"
            )
    for name, spans in analysis.filters.items():
        if name not in _ENV.filters:
            return (
                f"uses the filter {name!r} (line {_line(template, spans[0].index)}), which "
                "Liquid does not have"
            )
    return None


# what an item of a list field has: a label is a string (only its size), a blocker a
# mapping of these keys (and Liquid's size, first, last of any mapping)
_ITEMS: dict[str, tuple[str, ...]] = {
    "labels": ("size",),
    "blocked_by": ("id", "identifier", "state", "size", "first", "last"),
}


def _item_misuse(parsed: Any, template: str) -> str | None:
    """A field of a loop variable bound to `issue.labels` or `issue.blocked_by` that
    their items lack (``{% for l in issue.labels %}{{ l.name }}``): it renders for an
    issue without labels and fails every attempt of an issue with one. None when all
    is well (or the walk itself fails: it is a help)."""
    try:
        for node in parsed.nodes:
            problem = _visit(node, {}, template)
            if problem is not None:
                return problem
    except Exception:
        return None
    return None


def _visit(node: Any, bound: dict[str, str], template: str) -> str | None:
    """`node` and its children; `bound`: the loop variables in scope over a list field."""
    for expr in node.expressions():
        problem = _path_misuse(expr, bound, template)
        if problem is not None:
            return problem
    inner = dict(bound)  # an assign does not rebind a loop variable: the loop's wins
    loop = getattr(node, "expression", None)
    for name in map(str, node.block_scope()):  # the loop variable, its `forloop` ...
        inner.pop(name, None)
    if isinstance(loop, LoopExpression):
        iterable = str(loop.iterable)
        if iterable.startswith("issue.") and iterable[6:] in _ITEMS:
            inner[str(loop.identifier)] = iterable[6:]
    for child in node.children(None, include_partials=False):
        problem = _visit(child, inner, template)
        if problem is not None:
            return problem
    return None


def _path_misuse(expr: Any, bound: dict[str, str], template: str) -> str | None:
    if isinstance(expr, Path) and len(expr.path) > 1 and str(expr.path[0]) in bound:
        name, key = str(expr.path[0]), expr.path[1]
        has = _ITEMS[bound[name]]
        if isinstance(key, int) or (isinstance(key, str) and key not in has):
            what = "a label is a string" if has == ("size",) else "a blocker has"
            return (
                f"uses {expr} (line {_line(template, expr.token.start_index)}), but {name} "
                f"is an item of issue.{bound[name]} and {what} "
                + (
                    "with no fields; use {{ " + name + " }}"
                    if has == ("size",)
                    else ", ".join(has[:3])
                )
            )
    for child in expr.children():
        problem = _path_misuse(child, bound, template)
        if problem is not None:
            return problem
    return None


def _line(template: str, index: int) -> int:
    """The line (of the prompt, from 1) of character `index`."""
    return template.count("\n", 0, max(index, 0)) + 1


def render_prompt(template: str, issue: Issue, attempt: int | None) -> str:
    """The prompt for `issue` at `attempt` (None on the first run)."""
    parsed = _parse(template)
    context: dict[str, Any] = {"issue": issue.to_dict(), "attempt": attempt}
    try:
        return str(parsed.render(**context))
    except LiquidError as exc:
        raise TemplateError(
            f"the prompt template does not render for {issue.identifier}: {_one_line(exc)} "
            "(known: issue.id, issue.identifier, issue.title, issue.description, issue.state, "
            "issue.priority, issue.labels, issue.url, issue.blocked_by, ..., attempt)",
            code="template_render_error",
        ) from None


def continuation_prompt(turn: int, max_turns: int) -> str:
    return CONTINUATION_PROMPT.format(turn=turn, max_turns=max_turns)
