"""A tenant's "waiting" answer that names nothing to wait on is not the protocol's: it
fails the run as any such line does, `RemoteRefusedError` (``invalid_answer``). It
failed it as the body's own error (`RemoteWorkflowError`, "ProtocolError"), which the
README keeps for a failure of the workflow. Against a real HTTP server on loopback."""

from __future__ import annotations

import pytest

import tether
from tether import RunStatus
from tether.remote import RemoteRefusedError, RemoteWorkflowError

from ._http import serve


def test_a_waiting_answer_without_waitpoints_is_an_invalid_answer(app: tether.App) -> None:
    step = b'{"type":"step","step":{"key":"look-up","name":"look-up","result":"1"}}\n'
    answer = b'{"type":"answer","answer":{"status":"waiting"}}\n'
    server, url, _ = serve(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson", step + answer)
    try:
        flow = app.remote_workflow("idle", url=url, secret="s")
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow, workflow_id="idle-1")
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.code == "invalid_answer"
    assert "a 'waiting' answer names no waitpoint to wait on" in str(raised.value)
    rec = app.get_record("idle-1")
    assert rec.status is RunStatus.FAILED and rec.steps["look-up"].result == 1


def test_a_failed_answer_without_an_error_says_so(app: tether.App) -> None:
    """A tenant's 'failed' answer with no error read "failed on the tenant: Exception: ",
    naming an exception nobody raised, with no message."""
    answer = b'{"type":"answer","answer":{"status":"failed"}}\n'
    server, url, _ = serve(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson", answer)
    try:
        flow = app.remote_workflow("mute", url=url, secret="s")
        with pytest.raises(RemoteWorkflowError, match="answered 'failed' without saying why"):
            app.run(flow, workflow_id="mute-1")
    finally:
        server.shutdown()
        server.server_close()
