"""A real HTTP server on a free loopback port, for the tests' stand-ins of other
programs (trackers, proxies): served from a thread, shut down and closed after."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


@contextmanager
def loopback(server: ThreadingHTTPServer) -> Iterator[str]:
    """`server` (bound to 127.0.0.1, port 0) served until the block ends; its URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
