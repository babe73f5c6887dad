"""HTTP: /metrics from the pre-rendered exposition, a landing page, and health endpoints.

A WSGI app (testable without sockets) served by a threading wsgiref server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .exposition import Exposition
from .state import State

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>Docker Inventory Exporter</title></head>
<body><h1>Docker Inventory Exporter</h1>
<p>Images and containers on {engine}, collected on a schedule.</p>
<ul><li><a href="metrics">Metrics</a></li>
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


def make_app(
    exposition: Exposition, state: State, engine: str
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    landing = LANDING.format(engine=engine.replace("&", "&amp;").replace("<", "&lt;")).encode()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b"Method Not Allowed\n"]
        if path == "/metrics":
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
        if path == "/-/ready":
            if state.view.ready:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"Ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"Not ready: the first collection has not finished\n"]
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
