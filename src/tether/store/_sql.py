"""Named queries: packaged files ``queries/common.sql`` and ``queries/<dialect>.sql``.

A dialect's queries are those of ``common.sql`` (text that is the same in both
dialects) and those of its own file (text that differs). A name is defined in
one of the two, never both: a repeated name is an error, not an override, so a
query cannot be changed in one place while a stale copy still runs in another.

A block headed ``-- name: claim_run`` runs to the next header. Parameters are
written ``:name`` in both files; for PostgreSQL they become psycopg's
``%(name)s`` (so a literal ``%`` is doubled, and ``::type`` casts stay).
``{_cols}`` inserts the block named ``_cols`` (a fragment such as a column
list), ``{TERMINAL}`` / ``{CLOSED}`` / ``{JOB_RUN}`` / ``{OPEN}`` a status set of `_lifecycle`.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from ._lifecycle import CLOSED, JOB_RUN, OPEN, TERMINAL, sql_set

__all__ = ["queries"]

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SLOT = re.compile(r"\{(\w+)\}")


@functools.cache
def queries(dialect: str) -> dict[str, str]:
    """Every named query of `dialect`, ready for its driver."""
    blocks: dict[str, str] = {}
    for file in ("common.sql", f"{dialect}.sql"):
        text = resources.files("tether.store").joinpath("queries", file).read_text("utf-8")
        parts = _HEADER.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            lines = [
                ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("--")
            ]
            if name in blocks:
                raise RuntimeError(f"query {name!r} defined twice (common.sql, {dialect}.sql)")
            # one line each: a comment at the end of a line ends with it (joined into one
            # line, it swallowed the rest of the query: ORDER BY, LIMIT, FOR UPDATE)
            blocks[name] = "\n".join(ln.strip() for ln in lines)
    sets = {
        "TERMINAL": sql_set(TERMINAL),
        "CLOSED": sql_set(CLOSED),
        "JOB_RUN": sql_set(JOB_RUN),
        "OPEN": sql_set(OPEN),
    }

    def fill(sql: str) -> str:
        return _SLOT.sub(
            lambda m: fill(blocks[m.group(1)]) if m.group(1) in blocks else sets[m.group(1)], sql
        )

    out = {}
    for name, sql in blocks.items():
        if name.startswith("_"):
            continue
        sql = fill(sql)
        if dialect == "postgresql":
            sql = _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        out[name] = sql
    return out
