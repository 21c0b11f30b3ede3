"""What a test's child process is given to import."""

from __future__ import annotations

import os
from pathlib import Path


def child_pythonpath(*folders: Path | str) -> str:
    """`folders` (the test's own modules) and then the caller's PYTHONPATH: a run with
    PYTHONPATH naming another copy of tether's `src` (the proof that a test fails on the
    code before a fix) reaches the children too, where a bare folder hid it from them."""
    return os.pathsep.join([*map(str, folders), *filter(None, [os.environ.get("PYTHONPATH")])])
