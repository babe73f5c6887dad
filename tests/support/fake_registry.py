"""A stand-in registry (and token service) on loopback, for what a real one won't do on cue:
429s, redirects, a HEAD refused, huge headers, slow drips, short-lived tokens.

Every request is recorded with its method, path and headers, so tests can prove where a
credential went. ``route(method, path, headers)`` decides the answer: a ``Reply``.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@dataclass
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    drip: float = 0.0  # seconds between the bytes of the header block: a slow drip


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]


Route = Callable[[str, str, Mapping[str, str]], Reply]


class FakeRegistry:
    def __init__(self, route: Route, tls: ssl.SSLContext | None = None) -> None:
        self.route = route
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with registry.lock:
                    registry.seen.append(Seen(self.command, self.path, headers))
                reply = registry.route(self.command, self.path, headers)
                head = f"HTTP/1.1 {reply.status} X\r\n"
                for key, value in reply.headers.items():
                    head += f"{key}: {value}\r\n"
                head += f"Content-Length: {len(reply.body)}\r\n\r\n"
                data = head.encode()
                try:
                    if reply.drip:
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    else:
                        self.wfile.write(data)
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except OSError:
                    pass

            do_HEAD = _answer
            do_GET = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def requests(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if method is None or s.method == method]


@contextmanager
def fake_registry(route: Route, tls: ssl.SSLContext | None = None) -> Iterator[FakeRegistry]:
    registry = FakeRegistry(route, tls)
    registry.thread.start()
    try:
        yield registry
    finally:
        registry.server.shutdown()
        registry.server.server_close()


def manifest(digest: str, extra: Mapping[str, str] | None = None) -> Reply:
    return Reply(200, {"Docker-Content-Digest": digest, **(extra or {})})
