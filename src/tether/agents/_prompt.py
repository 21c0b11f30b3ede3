"""Prompt rendering: strict Liquid. An unknown variable or filter is an error
(a typo such as ``{{ issue.titel }}`` must never reach the agent as text), and
every issue field is present (None when empty) so ``{% if issue.description %}``
works on a strict template. `attempt` is None on the first run, then 1, 2, ...
"""

from __future__ import annotations

from typing import Any

from liquid import Environment, StrictUndefined
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


def check_template(template: str) -> None:
    """Parse `template` now (`template_parse_error`), so a bad file fails at load."""
    try:
        _ENV.from_string(template)
    except LiquidError as exc:
        raise TemplateError(
            f"the prompt template does not parse: {_one_line(exc)}", code="template_parse_error"
        ) from None


def render_prompt(template: str, issue: Issue, attempt: int | None) -> str:
    """The prompt for `issue` at `attempt` (None on the first run)."""
    try:
        parsed = _ENV.from_string(template)
    except LiquidError as exc:
        raise TemplateError(
            f"the prompt template does not parse: {_one_line(exc)}", code="template_parse_error"
        ) from None
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
