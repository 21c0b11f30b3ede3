"""The named-query loader: each query whole, comments and all."""

from __future__ import annotations

import pytest

from tether.store._sql import queries


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_comment_at_the_end_of_a_line_hides_nothing_after_it(dialect: str) -> None:
    # joined into one line, "AND status != 'cancelled'  -- a comment" commented out the
    # rest: orphans were adopted all at once, unordered, and on PostgreSQL unlocked
    sql = queries(dialect)["orphans_to_adopt"]
    live = "\n".join(line.split("--")[0] for line in sql.splitlines())
    assert "ORDER BY updated_at LIMIT" in live
    if dialect == "postgresql":
        assert "FOR UPDATE SKIP LOCKED" in live
    for name, text in queries(dialect).items():
        for line in text.splitlines():
            code = line.split("--")[0]
            assert not code.strip() or "--" not in line or line.strip().startswith("--"), (
                f"{name}: keep comments on lines of their own: {line!r}"
            )
