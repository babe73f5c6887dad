"""HTTP: /metrics from the pre-rendered exposition, a landing page, and health endpoints.

A WSGI app (testable without sockets), served by ``server.HTTPServer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs

from .exposition import Exposition

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>Docker Inventory Exporter</title></head>
<body><h1>Docker Inventory Exporter</h1>
<p>Images and containers on {engine}, collected on a schedule.</p>
<ul><li><a href="{metrics}">Metrics</a></li>{extra}
<li><a href="-/healthy">Health</a></li><li><a href="-/ready">Readiness</a></li></ul>
</body></html>
"""


def _accepted(header: str) -> dict[str, float]:
    """An Accept-style header as {lowercased value: q}; q=0 means "not acceptable"."""
    out: dict[str, float] = {}
    for part in header.split(","):
        value, *params = (p.strip() for p in part.split(";"))
        if not value:
            continue
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        out[value.lower()] = max(q, out.get(value.lower(), 0.0))
    return out


def wants_openmetrics(accept: str) -> bool:
    """OpenMetrics when the scraper accepts it and prefers it to the text format."""
    offered = _accepted(accept)
    om = offered.get("application/openmetrics-text", 0.0)
    return om > 0 and om >= offered.get("text/plain", 0.0)


def wants_gzip(accept_encoding: str) -> bool:
    offered = _accepted(accept_encoding)
    return offered.get("gzip", offered.get("*", 0.0)) > 0


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


class Serving(Protocol):
    """What the app serves: one target, or a fleet of them."""

    @property
    def description(self) -> str:
        """For the landing page, e.g. the engine's address."""

    def exposition(self, target: str | None) -> Exposition | None:
        """The exposition for /metrics (None) or /metrics?target=NAME; None if unknown."""

    def exposition_at_once(self) -> Exposition | None:
        """The exposition for /metrics when taking it has no side effect and never blocks
        (a fleet's own refreshes it first: None)."""

    def ready(self) -> bool: ...

    def service_discovery(self) -> bytes | None:
        """The /targets answer (Prometheus HTTP SD JSON); None where it is not served."""


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode() + b"\n"]


def answered_at_once(
    serving: Serving, telemetry_path: str = "/metrics"
) -> Callable[[dict[str, Any]], bool]:
    """For the server: whether the app answers a request with bytes it already holds, a
    /metrics whose variant the newest rendering has built (any other request: False)."""

    def at_once(environ: dict[str, Any]) -> bool:
        if environ.get("PATH_INFO") != telemetry_path or environ.get("QUERY_STRING"):
            return False
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        exposition = serving.exposition_at_once()
        return exposition is not None and exposition.current.built(
            wants_openmetrics(environ.get("HTTP_ACCEPT", "")),
            wants_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")),
        )

    return at_once


def make_app(
    serving: Serving, telemetry_path: str = "/metrics"
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    fleet = serving.service_discovery() is not None
    extra = '\n<li><a href="targets">Targets</a> (Prometheus HTTP SD)</li>' if fleet else ""
    landing = LANDING.format(
        engine=_html(serving.description), metrics=_html(telemetry_path[1:]), extra=extra
    ).encode()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b"Method Not Allowed\n"]
        if path == telemetry_path:
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
