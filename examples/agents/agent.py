"""A scripted coding agent speaking tether's `command` protocol: the prompt on
stdin, JSON lines on stdout. It writes the file the issue asks for, reports
the usage of its turn (``cumulative: false``: it keeps no running total of its
session), and ends the turn."""

from __future__ import annotations

import json
import os
import sys


def say(**line: object) -> None:
    print(json.dumps(line), flush=True)


prompt = sys.stdin.read()
ident = os.environ.get("TETHER_ISSUE_IDENTIFIER", "?")
say(type="message", text=f"read the prompt for {ident} ({len(prompt)} characters)")
name = "goodbye.txt" if "farewell" in prompt.lower() else "hello.txt"
with open(name, "w") as f:
    f.write(f"{'Goodbye' if name == 'goodbye.txt' else 'Hello'} from the agent ({ident})\n")
say(type="tool", text=f"wrote {name}")
say(type="usage", input_tokens=1200, output_tokens=150, cost_usd=0.0021, cumulative=False)
say(type="result", status="completed", message=f"wrote {name}", session_id=f"demo-{ident}")
