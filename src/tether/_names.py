"""Names and ids: what both databases can store and index, checked once for all.

Step names, keys, workflow ids, signal names and event types end up in
indexed text columns: they must be non-blank text without NUL or lone
surrogates (which PostgreSQL refuses and SQLite would keep), and short
enough for an index entry.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidArgumentError

__all__ = ["check_name", "check_own_event", "check_queue_name", "check_text", "unstorable"]


def check_name(what: str, key: object) -> str:
    """`key` if it is a name the database can store and index; else a clear error."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidArgumentError(
            f"{what} must be a non-empty string, got {_shown(key)}; "
            "pass a name such as 'fetch-user'"
        )
    check_text(what, key)
    if len(key) > 250 and len(key.encode()) > _MAX_KEY_BYTES:  # a PostgreSQL index entry
        raise InvalidArgumentError(
            f"{what} {_shown(key)} is {len(key.encode())} bytes long; keep it within "
            f"{_MAX_KEY_BYTES} bytes of UTF-8 (e.g. pass a hash of a long key)"
        )
    return key


def check_queue_name(what: str, name: object) -> str:
    """`name` if it is a queue name a worker can be told on its command line: ``tether
    worker -q a,b`` splits at commas and strips each name, so a queue named ``a,b`` or
    ``" a"`` would take runs that no worker started from a shell could ever serve; one
    with a control character (``"a\\nb"``) could only be typed quoted with $'...'."""
    check_name(what, name)
    assert isinstance(name, str)
    if "," in name:
        raise InvalidArgumentError(
            f"{what} {_shown(name)} contains a comma, which `tether worker -q` reads as "
            "a separator between queue names, so no worker could serve it; name the "
            f"queue without commas, e.g. {_shown(name.replace(',', '-'))}"
        )
    if name != name.strip():
        raise InvalidArgumentError(
            f"{what} {_shown(name)} starts or ends with whitespace, which `tether worker "
            f"-q` strips, so no worker could serve it; pass {_shown(name.strip())}"
        )
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:  # a newline split `tether worker -q` hints and tables in two
        raise InvalidArgumentError(
            f"{what} {_shown(name)} contains a control character ({control!r}), which a "
            "shell line cannot carry plainly to `tether worker -q`; name the queue with "
            "printable characters only"
        )
    return name


def unstorable(text: str) -> bool:
    """Whether `text` holds a NUL or a lone surrogate, which PostgreSQL refuses (and
    SQLite keeps, or cannot encode): the one test for text either database must hold."""
    return "\x00" in text or (not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text))


def check_text(what: str, text: object) -> str:
    """`text` (a name, or free text: a cancel's reason) if both databases can store it:
    no NUL, no lone surrogate (PostgreSQL refuses both, SQLite kept a NUL)."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{what} must be a string, got {_shown(text)}")
    if unstorable(text):
        raise InvalidArgumentError(
            f"{what} {_shown(text)} contains a NUL character or a lone surrogate, which the "
            "database cannot store; pass valid text without '\\x00'"
        )
    return text


# What the engine and its layers write; readers of a history (the dashboard, stage
# records, tracing, batch collection) take these for what tether did.
ENGINE_EVENT_PREFIXES = (
    "workflow.", "step.", "stage.", "pipeline.", "run.", "wait.", "signal.", "state.",
    "mutex.", "lease.", "heartbeat.", "ai.", "budget.", "remote.", "tether.",
)  # fmt: skip
_ENGINE_EVENT_TYPES = frozenset({"job.ghost", "job.lease_expired"})


def check_own_event(type: str) -> str:
    """`type` if a run's code may write it: not an event of the engine's own (what is
    no name at all is `check_name`'s to refuse)."""
    if not isinstance(type, str):
        return type
    space, _, rest = type.partition(".")
    if type.startswith(ENGINE_EVENT_PREFIXES):
        what = f"is in tether's own namespace '{space}.'"
    elif type in _ENGINE_EVENT_TYPES:
        what = "is an event tether writes"
    else:
        return type
    raise InvalidArgumentError(
        f"event type {type!r} {what}, which readers of a run's history take for what "
        f"the engine did; name yours in a namespace of your own, e.g. 'app.{rest}' or "
        f"'{space}_{rest}'"
    )


def _shown(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


_MAX_KEY_BYTES = 1000
