"""Owner names, and telling a dead owner from a live one without waiting.

An owner is ``host:pid:nonce``. A run's owner renews its claim while it
lives; when a claim is found live but its owner is on this machine, the
claimant may check at once whether that owner still exists instead of
waiting for the claim to lapse: a process that is gone (or a zombie), or an
owner of this very process that was closed, is dead. Owners on other
machines are only ever judged by their claim's expiry.
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["forget_owner", "local_owners_like", "new_owner", "owner_is_dead", "owner_pid"]

_HOST = socket.gethostname()
_LIVE: set[str] = set()  # owners of this process that are open


def new_owner() -> str:
    """A fresh owner name of this process, live until `forget_owner`."""
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _LIVE.add(owner)
    return owner


def forget_owner(owner: str) -> None:
    """This process's `owner` is closed: its runs may be taken over at once."""
    _LIVE.discard(owner)


def local_owners_like() -> str:
    """An SQL LIKE pattern matching the owners of this machine (and, its ``_`` and
    ``%`` unescaped, maybe a few more: `owner_is_dead` tells them apart)."""
    return _HOST + ":%"


def owner_pid(owner: str) -> int | None:
    """The process id in `owner` (``host:pid:nonce``); None if it is not one."""
    parts = owner.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def owner_is_dead(owner: str | None) -> bool:
    """True only when `owner` is known to be gone; False when alive or unknown."""
    if not owner or owner.rsplit(":", 2)[0] != _HOST:
        return False
    pid = owner_pid(owner)
    if pid is None:
        return False
    if pid == os.getpid():
        return owner not in _LIVE
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
