"""A private registry for integration tests: Debian's docker-registry (distribution 2.8.2),
run as our own child process on a loopback port, with its own config, storage and log.

Nothing of the system's docker-registry service is used or touched (its package may have
installed one): the binary is started with a config file written here. Its access log (one
line per request, in the combined log format) is how tests count requests at the registry.

Modes: plain HTTP; TLS with htpasswd (bcrypt) Basic auth; token auth, where the registry
verifies JWTs signed by ``TokenIssuer`` with the certificate configured here.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
import requests

from tests.harness.dockerd import Engine
from tests.support.process import ManagedProcess, dies_with_the_suite, free_port

REGISTRY = shutil.which("docker-registry", path="/usr/bin:/usr/local/bin") or ""
_ACCESS = re.compile(
    r"\[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(HEAD|GET|PUT|POST|PATCH|DELETE) (/v2/[^ ]*) HTTP/[0-9.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"'
)
EXPORTER_AGENT = "docker-inventory-exporter"


def registry_unavailable() -> str | None:
    if not REGISTRY:
        return "no docker-registry binary (Debian package docker-registry; scripts/test-deps)"
    return None


class RegistryServer(ManagedProcess):
    def __init__(
        self,
        root: Path,
        *,
        tls: tuple[Path, Path] | None = None,  # (cert, key)
        htpasswd: tuple[tuple[str, str], ...] = (),
        token: tuple[str, Path] | None = None,  # (realm URL, signing cert)
    ) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls else "http"
        http: dict[str, object] = {"addr": self.host, "secret": "test-secret"}
        if tls:
            http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
            "http": http,
        }
        if htpasswd:
            lines = [
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
                for user, password in htpasswd
            ]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}
        if token:
            config["auth"] = {
                "token": {
                    "realm": token[0],
                    "service": "test-registry",
                    "issuer": "test-issuer",
                    "rootcertbundle": str(token[1]),
                }
            }
        (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        super().__init__(
            dies_with_the_suite([REGISTRY, "serve", str(root / "config.yml")]),
            root / "registry.log",
        )
        self.wait_until(self._answers, 30.0, f"docker-registry on {self.host}")

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def requests(
        self, method: str | None = None, path_part: str = "", agent: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(method, path, status) of the requests in the access log; ``agent``: only those
        with that User-Agent (the exporter's, as against the engine's pulls)."""
        text = self.log_path.read_text(errors="replace")
        return [
            (m, p, s)
            for _, m, p, s, a in _ACCESS.findall(text)
            if (method is None or m == method) and path_part in p and (agent is None or a == agent)
        ]

    def request_times(self, method: str, path_part: str, agent: str) -> list[float]:
        """Clock times (whole seconds) of the matching requests in the access log."""
        text = self.log_path.read_text(errors="replace")
        return [
            datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z").timestamp()
            for when, m, p, _, a in _ACCESS.findall(text)
            if m == method and path_part in p and a == agent
        ]


@contextmanager
def registry_server(**kwargs: object) -> Iterator[RegistryServer]:
    root = Path(tempfile.mkdtemp(prefix="registry-"))
    server = None
    try:
        server = RegistryServer(root, **kwargs)  # type: ignore[arg-type]
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """A token service of our own: Basic-checked users get an ES256 JWT the registry trusts.

    Signed with ``openssl`` (the key is the test PKI's); the registry verifies it against the
    certificate in its ``rootcertbundle`` (the JWT's x5c header carries that certificate).
    """

    def __init__(
        self,
        key: Path,
        cert: Path,
        users: dict[str, str],
        lifetime: int = 60,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.key = key
        self.cert_der_b64 = base64.b64encode(_pem_to_der(cert.read_text())).decode()
        self.users = users
        self.lifetime = lifetime
        self.seen: list[tuple[str, str]] = []  # (query, authorization) of each request
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                issuer.seen.append((urlsplit(self.path).query, auth))
                user = ""
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if issuer.users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                scope = (query.get("scope") or [""])[0]
                access: list[dict[str, object]] = []
                if user and scope.startswith("repository:"):
                    _, name, actions = scope.split(":", 2)
                    access = [{"type": "repository", "name": name, "actions": actions.split(",")}]
                body = json.dumps(
                    {"token": issuer.sign(user, access), "expires_in": issuer.lifetime}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "x5c": [self.cert_der_b64]}
        claims = {
            "iss": "test-issuer",
            "sub": subject,
            "aud": "test-registry",
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": f"{now}-{len(self.seen)}",
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing_input}.{_b64(_der_to_raw(signature))}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _der_to_raw(der: bytes, size: int = 32) -> bytes:
    """An ECDSA signature as openssl writes it (DER SEQUENCE of r and s) to JWS's r || s."""
    pos = 2 if der[1] < 0x80 else 3  # past the SEQUENCE header
    raw = b""
    for _ in range(2):
        length = der[pos + 1]
        value = der[pos + 2 : pos + 2 + length]
        raw += value.lstrip(b"\x00").rjust(size, b"\x00")
        pos += 2 + length
    return raw


def _pem_to_der(pem: str) -> bytes:
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return base64.b64decode(body)


def tiny_image(engine: Engine, ref: str, content: str) -> str:
    """``docker import`` of a one-file root filesystem; the image ID."""
    data = content.encode()
    path = engine.root / f"rootfs-{content}.tar"
    with tarfile.open(path, mode="w") as tar:
        info = tarfile.TarInfo("content.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return engine.cli("import", "--change", 'CMD ["/content.txt"]', str(path), ref).stdout.strip()


INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_multi_arch(engine: Engine, reg: RegistryServer, path: str, tag: str) -> str:
    """An OCI index for linux/amd64 and linux/arm64 at ``path:tag`` (two tiny images pushed
    by the engine, the index PUT over the registry API): the index's digest."""
    parts = []
    for arch in ("amd64", "arm64"):
        ref = f"{reg.host}/{path}:{tag}-{arch}"
        tiny_image(engine, ref, f"{path.replace('/', '-')}-{arch}")
        engine.cli("push", ref)
        head = requests.head(
            f"http://{reg.host}/v2/{path}/manifests/{tag}-{arch}",
            # the containerd image store pushes OCI manifests, the classic store Docker's
            headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"},
            timeout=10,
        )
        parts.append(
            {
                "mediaType": head.headers["Content-Type"],
                "digest": head.headers["Docker-Content-Digest"],
                "size": int(head.headers["Content-Length"]),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": parts}).encode()
    put = requests.put(
        f"http://{reg.host}/v2/{path}/manifests/{tag}",
        data=index,
        headers={"Content-Type": INDEX},
        timeout=10,
    )
    if put.status_code != 201:
        raise RuntimeError(f"PUT of the index answered {put.status_code}: {put.text[:500]}")
    return put.headers["Docker-Content-Digest"]
