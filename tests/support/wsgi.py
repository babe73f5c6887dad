"""Driving the exporter's WSGI app directly, without sockets (as client_python's tests do)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

App = Callable[[dict[str, Any], Callable[[str, list[tuple[str, str]]], None]], Iterable[bytes]]


def call(
    app: App, path: str, method: str = "GET", **headers: str
) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers and body of one request; ``accept_encoding=`` is Accept-Encoding.

    ``path`` may carry a query string (``/metrics?target=a``).
    """
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    out: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        out["status"], out["headers"] = status, dict(hdrs)

    body = b"".join(app(environ, start_response))
    return out["status"], out["headers"], body
