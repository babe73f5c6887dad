"""The real exporter behind --web.config.file: TLS, client certificates and basic auth,
checked with real clients over loopback; and the HTTP details of the server itself."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from exporter.healthcheck import running_exporter_args
from exporter.server import HTTPServer, Limits
from tests.support.certs import PKI, make_pki
from tests.support.process import ExporterProcess, exporter_command
from tests.support.wait import wait_until

OFFLINE_ENGINE = ("--docker.host", "tcp://127.0.0.1:9", "--collect.disk-usage-interval", "0")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("foreign"))


def write_config(path: Path, pki: PKI | None, auth_type: str = "", rounds: int = 4) -> Path:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=rounds)).decode()
    text = ""
    if pki is not None:
        text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        if auth_type:
            text += f"  client_auth_type: {auth_type}\n  client_ca_file: {pki.ca}\n"
    text += f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    text += "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    path.write_text(text)
    return path


def start(run_exporter: Any, config: Path, *extra: str) -> ExporterProcess:
    exp: ExporterProcess = run_exporter(
        *OFFLINE_ENGINE, "--web.config.file", str(config), *extra, wait_ready=False
    )

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", exp.port), timeout=1):
            return True

    wait_until(
        listening,
        what="exporter listening",
        alive=exp.running,
        diagnostics=exp.log,
    )
    return exp


@pytest.fixture
def mtls(run_exporter, pki, tmp_path) -> ExporterProcess:
    return start(
        run_exporter, write_config(tmp_path / "web.yml", pki, "RequireAndVerifyClientCert")
    )


def https(exp: ExporterProcess, path: str = "/metrics") -> str:
    return f"https://127.0.0.1:{exp.port}{path}"


def test_a_good_client_gets_metrics(mtls, pki):
    answer = requests.get(
        https(mtls),
        verify=str(pki.ca),
        cert=(str(pki.client_cert), str(pki.client_key)),
        auth=("prometheus", "secret"),
        timeout=5,
    )
    assert answer.status_code == 200
    assert "docker_up 0.0" in answer.text
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in answer.headers  # nothing about the Python version


@pytest.mark.parametrize("auth", [("prometheus", "wrong"), ("nobody", "secret"), None])
def test_wrong_or_missing_credentials_get_401(mtls, pki, auth):
    answer = requests.get(
        https(mtls),
        verify=str(pki.ca),
        cert=(str(pki.client_cert), str(pki.client_key)),
        auth=auth,
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="docker-inventory-exporter"'
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


@contextmanager
def tls_socket(port: int, ctx: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        yield ctx.wrap_socket(raw, server_hostname="localhost")


def handshake(exp: ExporterProcess, ctx: ssl.SSLContext) -> bytes:
    """A GET over a raw TLS socket; the first bytes of the answer (raises on TLS failure)."""
    with tls_socket(exp.port, ctx) as tls:
        tls.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(100)


def client_context(pki: PKI, cert: PKI | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.client_cert), str(cert.client_key))
    return ctx


def refused(exp: ExporterProcess, ctx: ssl.SSLContext) -> bool:
    """True when the handshake fails. Under TLS 1.3 the client's side of the handshake ends
    before the server checks its certificate: the refusal then comes as an alert or EOF."""
    try:
        return handshake(exp, ctx) == b""
    except (ssl.SSLError, ConnectionResetError):
        return True


def test_handshakes_without_a_good_client_certificate_fail(mtls, pki, foreign):
    assert handshake(mtls, client_context(pki, pki)).startswith(b"HTTP/1.1 200")
    assert refused(mtls, client_context(pki, None))  # no client certificate
    assert refused(mtls, client_context(pki, foreign))  # one from another CA
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(https(mtls), verify=str(pki.ca), auth=("prometheus", "secret"), timeout=5)


def test_tls_1_1_is_refused_by_default(mtls, pki):
    old = client_context(pki, pki)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    assert refused(mtls, old)
    tls12 = client_context(pki, pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(mtls, tls12).startswith(b"HTTP/1.1 200")


def test_healthy_needs_no_password_and_head_has_no_body(mtls, pki):
    ctx = client_context(pki, pki)
    with tls_socket(mtls.port, ctx) as tls:
        tls.sendall(b"HEAD /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        head = tls.recv(1000)
        tls.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = b""
        while chunk := tls.recv(1000):
            rest += chunk
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 8" in head  # the length GET would have, without the body
    assert rest.startswith(b"HTTP/1.1 401") and rest.endswith(b"\r\n\r\n")


def server_certificate(exp: ExporterProcess, pki: PKI) -> bytes:
    with tls_socket(exp.port, client_context(pki, pki)) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_renewed_certificates_are_served_without_a_restart(run_exporter, tmp_path):
    first, renewed = make_pki(tmp_path / "first"), make_pki(tmp_path / "second")
    live = tmp_path / "live"
    live.mkdir()
    served_files = PKI(live / "ca.pem", live / "server.pem", live / "server-key.pem",
                       first.client_cert, first.client_key)  # fmt: skip

    def install(pki: PKI) -> None:
        """Replace each file at once, as a renewal tool does (write, then rename)."""
        for src, dst in (
            (pki.server_key, served_files.server_key),
            (pki.server_cert, served_files.server_cert),
            (pki.ca, served_files.ca),
        ):
            (dst.parent / (dst.name + ".new")).write_bytes(src.read_bytes())
            os.replace(dst.parent / (dst.name + ".new"), dst)  # fmt: skip

    install(first)
    config = write_config(tmp_path / "web.yml", served_files, "RequireAndVerifyClientCert")
    exp = start(run_exporter, config)
    pid = exp.pid
    assert server_certificate(exp, first) == der(first.server_cert)

    install(renewed)

    def served() -> bytes | None:
        try:
            return server_certificate(exp, renewed)  # the new CA verifies the new cert
        except (ssl.SSLError, ConnectionError):
            return None

    assert wait_until(served, 10, what="the renewed certificate") == der(renewed.server_cert)
    assert exp.pid == pid and exp.running()
    assert "TLS certificate files changed: reloaded" in exp.log()


def der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.fixture
def plain(run_exporter) -> ExporterProcess:
    exp: ExporterProcess = run_exporter(*OFFLINE_ENGINE)
    return exp


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
        (b"BREW /pot HTCPCP/1.0\r\n\r\n", b"400"),
    ],
    ids=["long request line", "big headers", "not HTTP"],
)
def test_request_size_limits(plain, request_bytes, status):
    assert raw_exchange(plain.port, request_bytes).startswith(b"HTTP/1.1 " + status)


def test_a_request_head_must_arrive_in_time(run_exporter):
    exp = run_exporter(*OFFLINE_ENGINE)
    with socket.create_connection(("127.0.0.1", exp.port), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        answer = b""
        # The bytes go half-way between two whole seconds of the deadline (10 s after the
        # first byte): a byte that arrived as the server closed would be unread input, and
        # Linux resets such a connection, the 408 with it (CI saw it once).
        time.sleep(0.5)
        while True:
            try:
                sock.sendall(b"X")  # a byte a second, never finishing the head
            except OSError:
                break
            time.sleep(1)
            sock.setblocking(False)
            try:
                chunk = sock.recv(1000)
            except BlockingIOError:
                chunk = None
            sock.setblocking(True)
            if chunk is not None:
                answer += chunk
                if not chunk:
                    break
            if time.monotonic() - started > 20:
                break
    assert answer.startswith(b"HTTP/1.1 408")
    # the 10 s header deadline answered it (the loop gives up at 20 s), and not before
    assert time.monotonic() - started > 9


@pytest.mark.parametrize(
    ("headers", "gzip", "openmetrics"),
    [
        ({"Accept-Encoding": "GZIP"}, True, False),
        ({"Accept-Encoding": "gzip;q=0, identity"}, False, False),
        ({"Accept-Encoding": "*"}, True, False),
        ({"Accept": "application/openmetrics-text;q=0, text/plain"}, False, False),
        (
            {"Accept": "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.3"},
            False,
            True,
        ),
    ],
)
def test_content_negotiation_honours_q_and_case(plain, headers, gzip, openmetrics):
    _status, _body, answer = plain.get("/metrics", headers=headers)
    assert (answer.get("Content-Encoding") == "gzip") is gzip
    assert answer["Content-Type"].startswith("application/openmetrics-text") is openmetrics


def test_a_client_still_sending_gets_the_whole_answer_before_the_close():
    # A client asks for a big answer and "Connection: close", and keeps sending (pipelined
    # bytes, more than the server buffers) while it reads slowly. Closing the socket with
    # that input unread makes the kernel reset the connection and drop the part of the
    # answer it still holds (4 of 5 such answers were cut before the server lingered).
    body = b"z" * 8_000_000

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    server = HTTPServer(app, "127.0.0.1", 0, Limits())
    server.start()
    got: list[int] = []
    try:
        for _ in range(3):
            with socket.socket() as sock:
                # a small receive buffer: most of the answer waits in the server's kernel
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                sock.settimeout(15)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                time.sleep(0.1)  # the request read: what follows is input after it

                def send(sock: socket.socket = sock) -> None:
                    with contextlib.suppress(OSError):  # reset, on a server that did not wait
                        sock.sendall(b"J" * 100_000)

                sender = threading.Thread(target=send)
                sender.start()
                answer = b""
                with contextlib.suppress(ConnectionResetError):  # cut: measured below
                    while chunk := sock.recv(65536):
                        answer += chunk
                sender.join(15)
                got.append(len(answer) if answer.endswith(body) else -len(answer))
    finally:
        server.shutdown()
    whole = len(body) + len(b"HTTP/1.1 200 \r\n")  # at least the body and a status line
    assert all(n > whole for n in got), got


def test_max_requests_answers_503_beyond_the_limit():
    # An app that holds its request until released keeps one request in the pool. (Wrong
    # passwords used to do that through bcrypt; since issue 20 they have their own budget,
    # see tests/unit/test_hardening_auth.py.)
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    server = HTTPServer(app, "127.0.0.1", 0, Limits(max_requests=1))
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    statuses: list[int] = []
    try:
        slow = threading.Thread(
            target=lambda: statuses.append(requests.get(f"{url}/slow", timeout=30).status_code)
        )
        slow.start()
        wait_until(lambda: server.in_flight == 1, what="the slow request in the pool")
        busy = [requests.get(f"{url}/fast", timeout=10).status_code for _ in range(2)]
        release.set()
        slow.join(30)
        assert (busy, statuses) == ([503, 503], [200])
        assert requests.get(f"{url}/fast", timeout=10).status_code == 200
    finally:
        release.set()
        server.shutdown()


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*exporter_command(), "--healthcheck", *args], capture_output=True, text=True, timeout=30
    )


def test_healthcheck_speaks_tls_and_needs_no_password(mtls, tmp_path):
    config = next(a for a in mtls.args if a.endswith("web.yml"))
    ok = healthcheck(f"--web.listen-address=127.0.0.1:{mtls.port}", f"--web.config.file={config}")
    assert ok.returncode == 0, ok.stderr
    plain_http = healthcheck(f"--web.listen-address=127.0.0.1:{mtls.port}")
    assert plain_http.returncode == 1
    other = make_pki(tmp_path / "other")
    impostor = write_config(tmp_path / "impostor.yml", other)  # expects another certificate
    wrong = healthcheck(
        f"--web.listen-address=127.0.0.1:{mtls.port}", f"--web.config.file={impostor}"
    )
    assert wrong.returncode == 1
    assert "the server's certificate is not" in wrong.stderr


def test_healthcheck_reads_the_running_exporters_flags_from_proc(tmp_path):
    proc = tmp_path / "proc"
    for pid, argv in (
        (1, ["/sbin/docker-init", "--", "docker-inventory-exporter", "--web.listen-address=:9999"]),
        (7, ["docker-inventory-exporter", "--healthcheck"]),
        (9, ["/usr/bin/python3", "-m", "exporter", "--web.config.file=/w.yml"]),
    ):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    assert running_exporter_args(proc) == ["--web.listen-address=:9999"]
    (proc / "1" / "cmdline").write_bytes(b"sh\0-c\0sleep 1\0")
    assert running_exporter_args(proc) == ["--web.config.file=/w.yml"]
