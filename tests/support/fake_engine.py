"""A stand-in engine on loopback TCP that replays recorded answers.

Used where the real engine cannot be made to misbehave on cue: a /system/df that hangs,
garbage answers, and counting requests per collection. Paths are matched after the
/vX.Y prefix is stripped, as a real engine does.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.paths import load

_VERSION = re.compile(r"^/v\d+\.\d+")

Answer = Any  # JSON-able payload, bytes sent as they are, or a Raw


class Raw:
    """An answer written by hand (status line, headers and all): for hostile engines."""

    def __init__(self, write: Callable[[BaseHTTPRequestHandler], object]) -> None:
        self.write = write


class FakeEngine:
    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = dict(answers)
        self.delays: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self.queries: list[tuple[str, str]] = []  # (path, raw query string), in order
        self.lock = threading.Lock()
        self.release = threading.Event()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                raw_path, _, query = self.path.partition("?")
                path = _VERSION.sub("", raw_path)
                with engine.lock:
                    engine.requests[path] += 1
                    engine.queries.append((path, query))
                    answer = engine.answers.get(path)
                    delay = engine.delays.get(path, 0.0)
                if delay:
                    engine.release.wait(delay)
                if isinstance(answer, Raw):
                    with contextlib.suppress(OSError):
                        answer.write(self)
                    self.close_connection = True
                    return
                if answer is None:
                    body = b'{"message":"page not found"}'
                    self.send_response(404)
                else:
                    if callable(answer):
                        answer = answer()
                    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # a short poll: close() (shutdown) waits up to one poll interval
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server.server_address[1]}"

    def set(self, path: str, answer: Answer | Callable[[], Answer]) -> None:
        with self.lock:
            self.answers[path] = answer

    def count(self, path: str) -> int:
        with self.lock:
            return self.requests[path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


SYNTHETIC_ANSWERS = {
    "/version": "synthetic/version-1.52.json",
    "/info": "docker-20.10/info.json",
    "/images/json": "synthetic/images-1.52.json",
    "/containers/json": "synthetic/containers-1.52.json",
    "/system/df": "synthetic/system_df-1.52.json",
}


def synthetic_engine() -> FakeEngine:
    """A stand-in engine answering with the synthetic API 1.52 fixtures."""
    return FakeEngine({path: load(name) for path, name in SYNTHETIC_ANSWERS.items()})


def bulk_engine(n_images: int, n_containers: int) -> FakeEngine:
    """A stand-in engine with ``n_images`` distinct tagged images and ``n_containers``
    containers spread over them, all shaped like the synthetic fixtures' first ones: a big
    /metrics for load and attack tests."""
    base_i = load("synthetic/images-1.52.json")[0]
    base_c = load("synthetic/containers-1.52.json")[0]
    images = [dict(base_i, Id=f"sha256:{i:064x}", RepoTags=[f"app{i}:v1"]) for i in range(n_images)]
    containers = [
        dict(base_c, Id=f"{i:064x}", Names=[f"/c{i}"], Image=f"app{i % n_images}:v1",
             ImageID=f"sha256:{i % n_images:064x}")
        for i in range(n_containers)
    ]  # fmt: skip
    return FakeEngine(
        {
            "/version": load("synthetic/version-1.52.json"),
            "/images/json": images,
            "/containers/json": containers,
        }
    )
