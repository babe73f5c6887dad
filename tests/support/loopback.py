"""A raw TCP server on 127.0.0.1 that misbehaves on purpose, optionally behind TLS.

Each accepted connection is handed to ``behaviour(conn)``: answer bytes, hang, reset, close.
Real sockets, so the client raises exactly the exceptions it would against a real engine.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

Behaviour = Callable[[socket.socket, threading.Event], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def answer(raw: bytes) -> Behaviour:
    """Read the request, send ``raw`` as is, close."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(raw)

    return run


def http_answer(status: str, body: bytes, content_type: str = "application/json") -> Behaviour:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return answer(head.encode() + body)


def hang(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and never answer (until the server closes)."""
    _read_request(conn)
    stop.wait()


def reset(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, then close with an RST (SO_LINGER 0) instead of a FIN."""
    _read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_silently(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and close without a byte of answer."""
    _read_request(conn)


def tls_server_context(certs: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The engine's side of TLS: its server cert; with ``client_ca``, client certs required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server-cert.pem", certs / "server-key.pem")
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class LoopbackServer:
    def __init__(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            if self.tls is not None:
                # a failed handshake sends the alert to the client and ends here
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


@contextlib.contextmanager
def loopback_server(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """The URL (tcp://127.0.0.1:port) of a server that treats every connection so."""
    server = LoopbackServer(behaviour, tls)
    try:
        yield server.url
    finally:
        server.close()
