"""A TCP relay on loopback to an engine's unix socket, that can cut every connection.

Stands between the exporter and a real engine where a test needs the network to fail on
cue: ``cut()`` resets every open connection (both ends), as a dropped route or a restarted
proxy would; new connections are relayed again at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path


class Relay:
    def __init__(self, target: Path) -> None:
        self.target = str(target)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.accepted = 0
        self.cuts = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            self.cuts += 1
            sockets, self.open = self.open, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()
