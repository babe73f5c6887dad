"""The socket proxy the deploy files ship (deploy/socket-proxy/haproxy.cfg), run with
Debian's real haproxy in front of a stand-in engine on a unix socket (issue 20, item 14).

Every request the exporter sends answers through it (the real EngineClient, every job's
path); /containers/{id}/archive, /export, /logs, /exec, /secrets, any other path and any
method but GET and HEAD are refused by the proxy and never reach the engine.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from exporter.config import EngineConfig
from exporter.engine import ENDPOINTS, EngineClient
from exporter.eventstream import EVENTS
from tests.support.env import clean_env, need
from tests.support.fake_engine import synthetic_engine
from tests.support.paths import REPO
from tests.support.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

CONFIG = REPO / "deploy" / "socket-proxy" / "haproxy.cfg"
DEPLOY_FILES = (REPO / "docker-compose.yml", REPO / "deploy" / "standalone" / "docker-compose.yml")


class UnixEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The synthetic engine's answers on a unix socket; every request it gets is noted."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        answers = synthetic_engine()
        answers.close()  # only its answers are used
        self.answers = answers.answers
        self.seen: list[tuple[str, str]] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def answer(self) -> None:
                engine.seen.append((self.command, self.path))
                path = self.path.partition("?")[0]
                if path.startswith("/v1."):
                    path = "/" + path.split("/", 2)[2]
                found = engine.answers.get(path)
                body = json.dumps(found if found is not None else {}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = answer

        super().__init__(str(path), Handler)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[int, UnixEngine]]:
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    need(None if binary else "haproxy not installed (Debian package haproxy)")
    assert binary is not None
    engine = UnixEngine(tmp_path / "docker.sock")
    thread = threading.Thread(target=engine.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = free_port()
    env = clean_env(
        {"PROXY_BIND": f"127.0.0.1:{port}", "DOCKER_SOCKET": str(tmp_path / "docker.sock")}
    )
    check = subprocess.run(
        [binary, "-c", "-f", str(CONFIG)], capture_output=True, text=True, env=env, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    haproxy = ManagedProcess([binary, "-db", "-f", str(CONFIG)], tmp_path / "haproxy.log", env=env)

    def listening() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    try:
        haproxy.wait_until(listening, what="haproxy listening")
        yield port, engine
    finally:
        haproxy.stop()
        engine.shutdown()
        engine.server_close()
        thread.join(10)


def request(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_every_request_of_the_exporter_answers(proxy):
    port, engine = proxy
    client = EngineClient(EngineConfig(f"tcp://127.0.0.1:{port}"), timeout=10)
    try:
        info = client.engine()
        assert info.api_version == "1.52"
        assert len(client.images()) == len(engine.answers["/images/json"])
        assert len(client.containers()) == len(engine.answers["/containers/json"])
        assert client.disk_usage(None, 10) == engine.answers["/system/df"]
        client.services()
        client.tasks()
    finally:
        client.close()
    paths = {re.sub(r"^/v[0-9.]+/", "/", path.partition("?")[0]) for _, path in engine.seen}
    assert paths == set(ENDPOINTS) and {m for m, _ in engine.seen} == {"GET"}
    inspect = "/containers/" + "0123456789ab" * 5 + "0123/json"  # the registry job's
    also = ("/_ping", "/v1.52/_ping", EVENTS, f"/v1.41{EVENTS}", inspect, f"/v1.45{inspect}")
    for path in (*also, *ENDPOINTS, *(f"/v1.24{p}" for p in ENDPOINTS)):
        assert request(port, "GET", path) == 200, path
        assert request(port, "HEAD", path) == 200, path


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/containers/abc/archive?path=/etc/shadow", 403),
        ("GET", "/v1.52/containers/abc/archive?path=/", 403),
        ("GET", "/containers/abc/export", 403),
        ("GET", "/containers/abc/logs?stdout=1", 403),
        ("GET", "/v1.52/containers/abc/logs", 403),
        ("GET", "/secrets", 403),
        ("GET", "/v1.52/secrets/xyz", 403),
        ("GET", "/exec/abc/json", 403),
        ("GET", "/containers/abc/json", 403),
        ("GET", "/containers/json/../abc/archive", 403),
        ("GET", "/containers%2Fjson", 403),
        ("GET", "//containers/json", 403),
        ("GET", "/containers/json/x", 403),
        ("GET", "/images/abc/get", 403),
        ("GET", "/volumes", 403),
        ("GET", "/containers/0123456789ab/json/x", 403),
        ("GET", "/containers/my-name/json", 403),
        ("GET", "/nope", 403),
        ("POST", "/containers/create", 405),
        ("POST", "/containers/json", 405),
        ("POST", "/containers/abc/exec", 405),
        ("POST", "/v1.52/images/create?fromImage=x", 405),
        ("PUT", "/containers/abc/archive", 405),
        ("DELETE", "/containers/abc", 405),
        ("DELETE", "/images/json", 405),
    ],
)
def test_everything_else_is_refused_before_the_engine(proxy, method, path, status):
    port, engine = proxy
    assert request(port, method, path) == status
    assert engine.seen == []


@pytest.mark.parametrize("deploy_file", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_deploy_files_run_this_very_file(deploy_file):
    services = yaml.safe_load(deploy_file.read_text())["services"]
    proxies = [s for s in services.values() if str(s.get("image", "")).startswith("haproxy:")]
    assert proxies, f"{deploy_file}: no haproxy service"
    for service in proxies:
        mounts = [v for v in service["volumes"] if v["target"].endswith("haproxy.cfg")]
        (mount,) = mounts
        assert (deploy_file.parent / mount["source"]).resolve() == CONFIG
        assert mount["target"] == "/usr/local/etc/haproxy/haproxy.cfg"
        assert mount["read_only"] is True
