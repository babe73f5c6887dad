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
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.support.paths import load

_VERSION = re.compile(r"^/v\d+\.\d+")

Answer = Any  # JSON-able payload, bytes sent as they are, or a Raw


class Raw:
    """An answer written by hand (status line, headers and all): for hostile engines."""

    def __init__(self, write: Callable[[BaseHTTPRequestHandler], object]) -> None:
        self.write = write


def _filtered_by_id(containers: list[Any], query: str) -> list[Any]:
    """``filters={"id": [...]}`` as dockerd applies it: a container matches when one of the
    values matches its ID (moby's filters.Args.Match: unanchored, so a full ID or a prefix)."""
    raw = parse_qs(query).get("filters")
    ids = json.loads(raw[0]).get("id") if raw else None
    if not ids:
        return containers
    return [c for c in containers if any(re.search(i, c.get("Id", "")) for i in ids)]


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
                    if path == "/containers/json" and isinstance(answer, list):
                        answer = _filtered_by_id(answer, query)
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


class EventFeed:
    """A stand-in ``/events``: replay of the held events since ``since``, then live ones.

    Filters by ``type`` and ``event`` (the action before any ``: suffix``) as moby does,
    holds the last ``limit`` events for replay (moby holds 256), and misbehaves on cue:
    ``cut()`` ends every open stream mid-chunk, ``stall`` makes new subscriptions hang
    before their headers and open ones go silent, ``send_raw`` writes bytes as they are.
    """

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.held: list[dict[str, Any]] = []
        self.live: list[tuple[int, Any]] = []  # (sequence, event or raw bytes)
        self.sequence = 0
        self.cond = threading.Condition()
        self.cuts = 0
        self.stall = False
        self.closed = False
        self.subscriptions: list[str] = []  # raw query strings, in order
        self.nano = time.time_ns()
        self.headers: list[tuple[str, str]] = []  # more answer headers (Podman's, say)

    def event(
        self, action: str, actor: str, kind: str = "container", **attributes: Any
    ) -> dict[str, Any]:
        """A moby-shaped event, each one nanosecond after the previous."""
        with self.cond:
            self.nano += 1_000
            nano = self.nano
        return {
            "status": action,
            "id": actor,
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": {k: str(v) for k, v in attributes.items()}},
            "scope": "local",
            "time": nano // 1_000_000_000,
            "timeNano": nano,
        }

    def emit(self, *events: dict[str, Any]) -> None:
        with self.cond:
            for event in events:
                self.held = [*self.held, event][-self.limit :]
                self.sequence += 1
                self.live.append((self.sequence, event))
            self.cond.notify_all()

    def send_raw(self, data: bytes) -> None:
        with self.cond:
            self.sequence += 1
            self.live.append((self.sequence, data))
            self.cond.notify_all()

    def cut(self) -> None:
        with self.cond:
            self.cuts += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    @staticmethod
    def _wanted(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
        if "type" in filters and event["Type"] not in filters["type"]:
            return False
        action = str(event["Action"]).split(":", 1)[0]
        return "event" not in filters or action in filters["event"]

    def answer(self) -> Raw:
        return Raw(self._serve)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = urlsplit(handler.path).query
        params = {k: v[0] for k, v in parse_qs(query).items()}
        filters = json.loads(params.get("filters", "{}"))
        since = params.get("since")
        until = params.get("until")
        with self.cond:
            self.subscriptions.append(query)
            while self.stall and not self.closed:
                self.cond.wait()
            cuts = self.cuts
            start = self.sequence
            replay = []
            if since is not None:
                secs, _, frac = since.partition(".")
                since_nano = int(secs) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
                replay = [e for e in self.held if e["timeNano"] >= since_nano]
                if until is not None:
                    secs, _, frac = until.partition(".")
                    until_nano = int(secs) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
                    replay = [e for e in replay if e["timeNano"] <= until_nano]
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        for name, value in self.headers:
            handler.send_header(name, value)
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        for event in replay:
            if until is not None or self._wanted(event, filters):
                chunk(json.dumps(event).encode() + b"\n")
        if until is not None:
            handler.wfile.write(b"0\r\n\r\n")
            return
        sent = start
        while True:
            with self.cond:
                while (
                    not self.closed and self.cuts == cuts and (self.stall or self.sequence == sent)
                ):
                    self.cond.wait()
                if self.closed or self.cuts != cuts:
                    break
                batch = [(n, e) for n, e in self.live if n > sent]
                sent = self.sequence
            for _, item in batch:
                if isinstance(item, bytes):
                    chunk(item)
                elif self._wanted(item, filters):
                    chunk(json.dumps(item).encode() + b"\n")
        # cut mid-chunk: half a line, then the connection goes
        with contextlib.suppress(OSError):
            handler.wfile.write(b'20\r\n{"Type":"contai')
            handler.wfile.flush()
            handler.connection.shutdown(2)


def evented_engine() -> tuple[FakeEngine, EventFeed]:
    """The synthetic stand-in with an event stream."""
    engine = synthetic_engine()
    feed = EventFeed()
    engine.set("/events", feed.answer())
    return engine, feed
