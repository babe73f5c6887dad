"""A stand-in for the socket proxy image the compose files run, for tests with no registry.

Since issue 20 that is the official ``haproxy`` image with deploy/socket-proxy/haproxy.cfg
mounted at ``/usr/local/etc/haproxy/haproxy.cfg``: when that file is there, the stand-in
applies its rules (the ``acl exporter_path path -m reg`` allowlist, GET and HEAD only;
403 and 405 otherwise, as HAProxy answers). The real HAProxy runs that file in
tests/integration/test_socket_proxy.py. Without the file, it stands in for
``tecnativa/docker-socket-proxy`` as below.

The compose files run that image; it cannot be pulled here, so the live compose test builds
an image of this script (on the debootstrapped base, stdlib only) under the same name. It
takes the same interface: it listens on :2375, reads ``/var/run/docker.sock``, and lets a
request through only when its path is in a section switched on by an environment variable
(``CONTAINERS=1``, ``IMAGES=1``...; ``EVENTS``, ``PING`` and ``VERSION`` default to on as in
the real proxy) and, unless ``POST=1``, its method is GET or HEAD. Anything else gets 403.
Each request is logged to stdout as ``METHOD PATH STATUS``.

It is not the real proxy (an HAProxy): the test proves the compose wiring (networks, the
exporter's --docker.host, the socket only in the proxy), not the proxy's own rules.
"""

from __future__ import annotations

import http.client
import http.server
import os
import re
import socket
import sys

SOCKET = "/var/run/docker.sock"
DEFAULT_ON = ("EVENTS", "PING", "VERSION")
# section variable -> the first path element after the optional /vX.Y prefix
SECTIONS = {
    "AUTH": "auth", "BUILD": "build", "COMMIT": "commit", "CONFIGS": "configs",
    "CONTAINERS": "containers", "DISTRIBUTION": "distribution", "EVENTS": "events",
    "EXEC": "exec", "IMAGES": "images", "INFO": "info", "NETWORKS": "networks",
    "NODES": "nodes", "PING": "_ping", "PLUGINS": "plugins", "SECRETS": "secrets",
    "SERVICES": "services", "SESSION": "session", "SWARM": "swarm", "SYSTEM": "system",
    "TASKS": "tasks", "VERSION": "version", "VOLUMES": "volumes",
}  # fmt: skip
PATH = re.compile(r"^(?:/v[0-9.]+)?/([^/?]+)")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def _on(name: str) -> bool:
    return os.environ.get(name, "1" if name in DEFAULT_ON else "0") == "1"


ALLOWED = {section for name, section in SECTIONS.items() if _on(name)}
METHODS = {"GET", "HEAD"} | ({"POST", "PUT", "DELETE"} if _on("POST") else set())
HAPROXY_CONFIG = "/usr/local/etc/haproxy/haproxy.cfg"


def _haproxy_rule() -> re.Pattern[str] | None:
    try:
        with open(HAPROXY_CONFIG) as f:
            text = f.read()
    except OSError:
        return None
    match = re.search(r"^\s*acl exporter_path path -m reg (\S+)$", text, re.M)
    if match is None:
        raise SystemExit(f"{HAPROXY_CONFIG}: no 'acl exporter_path path -m reg' line")
    return re.compile(match.group(1))


HAPROXY_PATHS = _haproxy_rule()


class _UnixConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCKET)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        if HAPROXY_PATHS is not None:
            if self.command not in ("GET", "HEAD"):
                self._answer(405, {"Content-Type": "text/plain"}, b"Method Not Allowed\n")
                return
            if not HAPROXY_PATHS.search(self.path.partition("?")[0]):
                self._answer(403, {"Content-Type": "text/plain"}, b"Forbidden\n")
                return
        else:
            match = PATH.match(self.path)
            if self.command not in METHODS or not match or match.group(1) not in ALLOWED:
                self._answer(403, {"Content-Type": "text/plain"}, b"Forbidden\n")
                return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = _UnixConnection("localhost", timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            self._answer(response.status, kept, data)
        finally:
            upstream.close()

    def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        print(f"{self.command} {self.path} {status}", flush=True)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:  # one line per request above
        pass


def main() -> int:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 2375), Handler)
    if HAPROXY_PATHS is not None:
        print(f"socket proxy stand-in: {HAPROXY_CONFIG}: {HAPROXY_PATHS.pattern}", flush=True)
    else:
        print(f"socket proxy stand-in: sections {sorted(ALLOWED)}, methods {sorted(METHODS)}",
              flush=True)  # fmt: skip
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
