"""A real HTTP server on loopback that answers as a test tells it to: a tenant gone
wrong, or a proxy in front of one."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(head: bytes, answer: bytes | Iterable[bytes]) -> tuple[_Server, str, list[int]]:
    """A real HTTP server on loopback that reads each request whole and answers it with
    `head` and `answer` (its chunks, if many), then closes; the sizes of the bodies it
    read."""
    sizes: list[int] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            sizes.append(len(self.rfile.read(length)))
            self.wfile.write(head + b"\r\nconnection: close\r\n\r\n")
            try:
                for chunk in [answer] if isinstance(answer, bytes) else answer:
                    self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:  # the client went first
                pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/", sizes


@contextmanager
def serving(head: bytes, answer: bytes | Iterable[bytes]) -> Iterator[str]:
    """`serve` for the block: its url, the server shut down after."""
    server, url, _ = serve(head, answer)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
