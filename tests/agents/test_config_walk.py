"""Every numeric setting of WORKFLOW.md has bounds, and a value outside them is refused
with the setting's name and the range it takes."""

from __future__ import annotations

import pytest

from tether.agents import WorkflowFileError, parse_workflow

HUGE = "99999999999999999999999"

# (section, key, the range the error names, a value at the top that is accepted)
SETTINGS = [
    ("polling", "interval_ms", "an integer from 1 to 86,400,000", "86400000"),
    ("workspace", "max_age_days", "a number > 0 and <= 36,500", "36500"),
    ("workspace", "max_total_mb", "a number > 0 and <= 1,000,000,000", "1e9"),
    ("hooks", "timeout_ms", "an integer from 1 to 86,400,000", "86400000"),
    ("agent", "max_tool_rounds", "an integer from 1 to 10,000", "10000"),
    ("agent", "command_timeout_ms", "an integer from 1 to 86,400,000", "86400000"),
    ("agent", "max_sessions", "an integer from 1 to 10,000", "10000"),
    ("agent", "max_concurrent_agents", "an integer from 1 to 10,000", "10000"),
    ("agent", "max_turns", "an integer from 1 to 10,000", "10000"),
    ("agent", "max_retries", "an integer from 0 to 10,000", "10000"),
    ("agent", "max_retry_backoff_ms", "an integer from 1 to 86,400,000", "86400000"),
    ("agent", "turn_timeout_ms", "an integer from 1 to 86,400,000", "86400000"),
    ("agent", "stall_timeout_ms", "an integer from 0 to 86,400,000", "86400000"),
    ("agent", "rate_limit_cooldown_ms", "an integer from 0 to 86,400,000", "86400000"),
    ("agent", "shutdown_grace_ms", "an integer from 0 to 86,400,000", "86400000"),
    ("budget", "max_usd", "a number > 0 and <= 1,000,000", "1000000"),
    ("budget", "max_tokens", "an integer from 1 to 1,000,000,000,000", "1000000000000"),
    ("budget", "warn_at", "a number > 0 and <= 1", "1"),
    ("server", "port", "an integer from 0 to 65,535", "65535"),
]


def _front(section: str, key: str, value: str) -> str:
    extra = "\n  max_usd: 5" if section == "budget" and key == "warn_at" else ""
    return f"---\ntracker: {{kind: memory}}\n{section}:\n  {key}: {value}{extra}\n---\nhi"


@pytest.mark.parametrize(("section", "key", "allowed", "top"), SETTINGS)
def test_a_numeric_setting_out_of_its_range_is_refused_naming_the_range(
    section: str, key: str, allowed: str, top: str
) -> None:
    """Before: ``agent.max_turns: 99999999999999999999999`` (and any other huge value,
    ``.inf`` for a float setting) was accepted; ``budget.max_usd: .inf`` then failed
    every attempt at run time (`ai.Budget` takes finite limits only)."""
    wf = parse_workflow(_front(section, key, top))
    assert float(getattr(getattr(wf.config, section), key)) == float(top)
    for bad in (HUGE, "-1", "2.5e+30", ".inf", "-.inf", ".nan"):
        with pytest.raises(WorkflowFileError) as err:
            parse_workflow(_front(section, key, bad))
        assert err.value.code == "invalid_config"
        assert f"{section}.{key} must be {allowed} (got " in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("key", "bad"),
    [("max_turns", "0"), ("max_turns", "2.5"), ("max_concurrent_agents", "0"), ("max_turns", "-3")],
)
def test_zero_a_fraction_or_a_negative_count_is_refused_naming_the_range(
    key: str, bad: str
) -> None:
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(_front("agent", key, bad))
    assert f"agent.{key} must be an integer from 1 to 10,000 (got {bad})" in str(err.value)


def test_a_boolean_is_refused_naming_the_range() -> None:
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(_front("agent", "max_turns", "true"))
    said = str(err.value)
    assert "max_turns must not be true" in said and "an integer from 1 to 10,000" in said


def test_a_per_state_cap_beyond_the_range_is_refused() -> None:
    """Before: ``{todo: 99999999999999999999999}`` was taken as a cap."""
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(_front("agent", "max_concurrent_agents_by_state", f"{{todo: {HUGE}}}"))
    said = str(err.value)
    assert "the cap of state 'todo' must be an integer > 0" in said
    assert "give one from 1 to 10,000" in said
    ok = parse_workflow(_front("agent", "max_concurrent_agents_by_state", "{todo: 10000}"))
    assert ok.config.agent.max_concurrent_agents_by_state == {"todo": 10_000}


def test_a_refused_value_of_hundreds_of_digits_is_shown_cut_short() -> None:
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(_front("agent", "max_turns", "9" * 400))
    said = str(err.value)
    assert "agent.max_turns must be an integer from 1 to 10,000" in said
    assert "(400 characters)" in said and len(said) < 200
