"""``POST /hooks/{name}``: a signed webhook becomes `send_event` (see `_hooks`)."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi import APIRouter, Request

from .._signatures import HookRejected, check_signature
from ._deps import served_app, settings
from ._errors import unreadable_json
from ._models import HookAccepted

__all__ = ["hooks"]

hooks = APIRouter()


@hooks.post("/hooks/{name}", summary="A signed webhook, sent to waiting runs as an event")
async def receive_hook(request: Request, name: str) -> HookAccepted:
    app, hook = served_app(request), settings(request).hooks.get(name)
    if hook is None:
        raise HookRejected(404, "hook_not_found", f"no webhook named {name!r} is configured")
    body = await request.body()
    now = app.clock.now()
    # one value per header, the one checked: a header sent twice was checked by its last
    # value and its expiry taken from its first (an old timestamp made a replay pass)
    headers = dict(request.headers.items())
    signature = check_signature(hook, headers, body, now.timestamp())
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError) as exc:  # nested too deeply: a RecursionError
        raise HookRejected(422, "invalid_json", unreadable_json(exc)) from None
    sent_at = int(headers["x-tether-timestamp"])
    expires = now + timedelta(seconds=sent_at + hook.tolerance - now.timestamp())
    if not await app.store.remember_signature(name, signature, expires_at=expires, at=now):
        raise HookRejected(409, "replayed", "this signed request was received before")
    try:
        woken = await app.asend_event(hook.event_type, payload)
    except BaseException:
        await app.store.forget_signature(name, signature)  # not carried out: may come again
        raise
    return HookAccepted(event=hook.event_type, woken=woken)
