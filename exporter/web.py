"""HTTP: /metrics from the pre-rendered exposition, a landing page, and health endpoints.

A WSGI app (testable without sockets) served by a threading wsgiref server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .exposition import Exposition

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>Docker Inventory Exporter</title></head>
<body><h1>Docker Inventory Exporter</h1>
<p>Images and containers on {engine}, collected on a schedule.</p>
<ul><li><a href="metrics">Metrics</a></li>{extra}
<li><a href="-/healthy">Health</a></li><li><a href="-/ready">Readiness</a></li></ul>
</body></html>
"""


def wants_openmetrics(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip()
        if media == "application/openmetrics-text":
            return True
    return False


def wants_gzip(accept_encoding: str) -> bool:
    return any(p.split(";")[0].strip() == "gzip" for p in accept_encoding.split(","))


class Serving(Protocol):
    """What the app serves: one target, or a fleet of them."""

    @property
    def description(self) -> str:
        """For the landing page, e.g. the engine's address."""

    def exposition(self, target: str | None) -> Exposition | None:
        """The exposition for /metrics (None) or /metrics?target=NAME; None if unknown."""

    def ready(self) -> bool: ...

    def service_discovery(self) -> bytes | None:
        """The /targets answer (Prometheus HTTP SD JSON); None where it is not served."""


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode() + b"\n"]


def make_app(serving: Serving) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    fleet = serving.service_discovery() is not None
    extra = '\n<li><a href="targets">Targets</a> (Prometheus HTTP SD)</li>' if fleet else ""
    engine = serving.description.replace("&", "&amp;").replace("<", "&lt;")
    landing = LANDING.format(engine=engine, extra=extra).encode()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b"Method Not Allowed\n"]
        if path == "/metrics":
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            name = query["target"][0] if "target" in query else None
            if name == "":
                return _plain(start_response, "400 Bad Request", "The target parameter is empty")
            exposition = serving.exposition(name)
            if exposition is None:
                return _plain(start_response, "404 Not Found", f"Unknown target {name!r}")
            gzipped = wants_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
            body, ctype = exposition.current.pick(
                wants_openmetrics(environ.get("HTTP_ACCEPT", "")), gzipped
            )
            headers = [
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Vary", "Accept, Accept-Encoding"),
            ]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [b"" if method == "HEAD" else body]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        if path == "/-/healthy":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"Healthy\n"]
        if path == "/targets":
            targets = serving.service_discovery()
            if targets is None:
                return _plain(start_response, "404 Not Found", "Not Found: no --config.file")
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(targets)))],
            )
            return [b"" if method == "HEAD" else targets]
        if path == "/-/ready":
            if serving.ready():
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"Ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"Not ready: a first collection has not finished\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def serve(
    app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Bind (raising OSError if the address is taken) and serve in a daemon thread."""
    server_class: Any = _ThreadingServer
    if ":" in host:
        import socket

        class _V6(_ThreadingServer):
            address_family = socket.AF_INET6

        server_class = _V6
    server = make_server(host or "0.0.0.0", port, app, server_class, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread
