"""Issues as a markdown file in the repository (the seed's roadmap format, simplified).

One ``##`` heading per issue, ``IDENT: title``; the bullet lines right under it
set fields; the rest of the section is the description::

    ## DEMO-1: Write a greeting
    - status: todo
    - priority: high
    - labels: agent, docs
    - blocked by: DEMO-0
    - created: 2026-01-01

    Say hello in hello.txt.

A ``##`` line inside a closed fenced code block (``` or ~~~) is part of the
description, not an issue. A heading without ``IDENT:`` gets the identifier
``<slug>-<8 hex of sha256(title)>``. Blockers take their state from the same file
(unknown: None, which blocks a ``todo`` issue). A priority is Linear's: a number (1
urgent .. 4 low; 0 is none) or one of the words ``urgent``, ``high``, ``medium``,
``low``, ``none``. Identifiers are unique in the file: two sections with one (or an
unknown priority word) make every read fail with an error naming the lines, rather
than work on one of them. `move` rewrites the status line;
`comment` appends a quoted line carrying its marker, and finds that marker first so it
never writes twice.
Writes replace the file atomically, one writer at a time (an ``flock`` on a
``.<name>.lock`` file beside it: several dispatcher processes may write at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import TrackerError
from .._issue import Blocker, Issue, normalise_labels, normalise_state

__all__ = ["FileTracker", "parse_issues"]

_OWN = "> **tether:**"  # how a line tether wrote starts (a person's quote of it does not)
_HEADING = re.compile(r"^##\s+(.*?)\s*$")
_FIELD = re.compile(r"^\s*[-*]\s+\**([A-Za-z][A-Za-z _-]*?)\**\s*:\s*\**\s*(.*?)\s*$")
_IDENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*):\s+(.+)$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass
class _Section:
    start: int  # line index of the heading
    end: int  # one past its last line
    identifier: str
    title: str
    fields: dict[str, str] = field(default_factory=dict)
    field_lines: dict[str, int] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)


def _slug_id(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:20]
    return f"{slug}-{hashlib.sha256(title.encode()).hexdigest()[:8]}"


def _fenced(lines: list[str]) -> set[int]:
    """The lines inside fenced code blocks (CommonMark's ``` and ~~~ fences): a ``##``
    there is code, not an issue. Only a closed fence counts: one left open would hide
    every issue after it."""
    inside: set[int] = set()
    opened: tuple[int, str, int] | None = None  # line, fence character, fence length
    for n, line in enumerate(lines):
        m = _FENCE.match(line)
        if opened is None:
            if m is not None and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                opened = (n, m.group(1)[0], len(m.group(1)))
        elif (
            m is not None
            and m.group(1)[0] == opened[1]
            and len(m.group(1)) >= opened[2]
            and not m.group(2).strip()
        ):
            inside.update(range(opened[0] + 1, n))
            opened = None
    return inside


def _sections(lines: list[str]) -> list[_Section]:
    found: list[_Section] = []
    code = _fenced(lines)
    for n, line in enumerate(lines):
        m = _HEADING.match(line) if n not in code else None
        if m is None:
            continue
        if found:
            found[-1].end = n
        head = m.group(1)
        im = _IDENT.match(head)
        ident, title = (im.group(1), im.group(2)) if im else (_slug_id(head), head)
        found.append(_Section(n, len(lines), ident, title.strip()))
    for s in found:
        in_fields = True
        for n in range(s.start + 1, s.end):
            fm = _FIELD.match(lines[n]) if in_fields else None
            if fm is not None:
                key = fm.group(1).strip().lower().replace("_", " ")
                s.fields[key] = fm.group(2)
                s.field_lines[key] = n
                continue
            if lines[n].strip() or s.body:
                in_fields = False
                s.body.append(lines[n])
    return found


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in re.split(r"[,;]", value or "") if v.strip() and v.strip() != "-"]


_PRIORITIES = {"urgent": 1, "high": 2, "medium": 3, "low": 4, "none": None, "no priority": None}


def _priority(s: _Section, source: str) -> int | None:
    """Linear's scale: 1 urgent .. 4 low, its 0 "no priority" None; the words too."""
    value = " ".join(s.fields.get("priority", "").split()).lower()
    if value in ("", "-"):
        return None
    if value.lstrip("-").isdigit():
        return int(value) or None
    if value in _PRIORITIES:
        return _PRIORITIES[value]
    raise TrackerError(
        f"{source} line {s.field_lines['priority'] + 1}: {s.identifier} has priority "
        f"{s.fields['priority']!r}; use a number (1 urgent .. 4 low, 0 none) or one of "
        f"{', '.join(_PRIORITIES)}",
        code="tracker_response",
    )


def _unique(sections: list[_Section], source: str) -> list[_Section]:
    """`sections`, refused if two share an identifier: which one a run, a move or a
    comment meant cannot be known, and working on either would be a guess."""
    first: dict[str, _Section] = {}
    for s in sections:
        seen = first.setdefault(s.identifier, s)
        if seen is not s:
            raise TrackerError(
                f"{source} has two issues {s.identifier!r} (the headings on lines "
                f"{seen.start + 1} and {s.start + 1}); give each its own identifier",
                code="tracker_response",
            )
    return sections


def _issue(s: _Section, states: dict[str, str], source: str) -> Issue:
    f = s.fields
    blockers = _split_list(f.get("blocked by") or f.get("blockers"))
    description = "\n".join(s.body).strip() or None
    return Issue(
        id=s.identifier,
        identifier=s.identifier,
        title=s.title,
        state=(f.get("status") or f.get("state") or "").strip(),
        description=description,
        priority=_priority(s, source),
        labels=normalise_labels(_split_list(f.get("labels"))),
        blocked_by=tuple(Blocker(b, b, states.get(b)) for b in blockers),
        dispatchable=normalise_state(f.get("dispatchable", "yes")) not in {"no", "false"},
        assignee_id=f.get("assignee") or None,
        branch_name=f.get("branch") or None,
        created_at=f.get("created") or None,
        updated_at=f.get("updated") or None,
    )


def parse_issues(text: str, *, source: str = "the issues file") -> list[Issue]:
    """The issues of a markdown file, in file order (`TrackerError`, naming `source`
    and the lines, for a duplicate identifier or an unknown priority)."""
    sections = _unique(_sections(text.splitlines()), source)
    states = {
        s.identifier: (s.fields.get("status") or s.fields.get("state") or "").strip()
        for s in sections
    }
    return [_issue(s, states, source) for s in sections]


class FileTracker:
    """The `file` tracker: reads (and writes) a markdown file of issues."""

    kind = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrackerError(
                f"cannot read the issues file {self.path}: {exc.strerror or exc}",
                code="tracker_request",
            ) from None
        except UnicodeDecodeError as exc:
            raise TrackerError(
                f"the issues file {self.path} is not UTF-8 text (byte {exc.object[exc.start]:#x} "
                f"at offset {exc.start}); save it as UTF-8",
                code="tracker_response",
            ) from None

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        if not states:
            return []
        wanted = {normalise_state(s) for s in states}
        return [
            i
            for i in parse_issues(self._text(), source=str(self.path))
            if normalise_state(i.state) in wanted
        ]

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        if not ids:
            return []
        wanted = set(ids)
        return [i for i in parse_issues(self._text(), source=str(self.path)) if i.id in wanted]

    def _write(self, lines: list[str]) -> None:
        """Replace the file whole (a reader never sees half of it), keeping its mode: the
        temporary file is 0600, and the issues file went unreadable to its group."""
        mode = stat.S_IMODE(self.path.stat().st_mode) if self.path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".issues-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, self.path)

    def _section(self, lines: list[str], issue_id: str) -> _Section:
        for s in _unique(_sections(lines), str(self.path)):
            if s.identifier == issue_id:
                return s
        raise TrackerError(f"no issue {issue_id!r} in {self.path}", code="tracker_response")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Writers take turns: dispatchers in several processes may move issues of one
        file at once, and a read-modify-write without this loses one of the moves."""
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def move(self, issue_id: str, state: str, *, marker: str) -> None:
        with self._locked():
            self._move(issue_id, state)

    def _move(self, issue_id: str, state: str) -> None:
        lines = self._text().splitlines()
        s = self._section(lines, issue_id)
        key = "status" if "status" in s.field_lines or "state" not in s.field_lines else "state"
        if key in s.field_lines:
            n = s.field_lines[key]
            prefix = lines[n][: len(lines[n]) - len(lines[n].lstrip())]
            lines[n] = f"{prefix}- {key}: {state}"
        else:
            lines.insert(s.start + 1, f"- status: {state}")
        self._write(lines)

    async def comment(self, issue_id: str, body: str, *, marker: str) -> None:
        with self._locked():
            self._comment(issue_id, body, marker)

    def _comment(self, issue_id: str, body: str, marker: str) -> None:
        lines = self._text().splitlines()
        s = self._section(lines, issue_id)
        tag = f"<!-- {marker} -->"
        if any(_ours(lines[n], tag) for n in range(s.start, s.end)):
            return  # written before a crash: not again
        end = s.end
        while end > s.start + 1 and not lines[end - 1].strip():
            end -= 1
        text = " ".join(body.split())
        lines[end:end] = ["", f"{_OWN} {text} {tag}"]
        self._write(lines)

    async def aclose(self) -> None:
        return None


def _ours(line: str, tag: str) -> bool:
    """Whether `line` is a comment tether wrote with `tag` (not a person quoting one)."""
    return line.startswith(_OWN) and line.rstrip().endswith(tag)
