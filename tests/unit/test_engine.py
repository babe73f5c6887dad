"""The engine client's failure messages, one row per cause, from real exceptions.

Every row points a real EngineClient at a loopback server that fails in one way (or at a
closed port / missing socket), so the exception chain describe() reads is the one requests,
urllib3 and ssl really raise. No root and no engine needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from exporter import records
from exporter.config import EngineConfig, TLSSettings
from exporter.engine import DF_BUSY, ENDPOINTS, SYSTEM_DF, EngineClient, EngineError
from exporter.records import ContainerRecord, ContainerStream
from tests.support import loopback
from tests.support.certs import generate_certs
from tests.support.fake_engine import SYNTHETIC_ANSWERS, FakeEngine, Raw, synthetic_engine
from tests.support.paths import load
from tests.support.process import free_port

TIMEOUT = 0.5


@dataclass(frozen=True)
class TLSMaterial:
    certs: Path  # the engine's CA, its server cert and a client cert it signed
    wrong: Path  # the same from an unrelated CA


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(*generate_certs(tmp_path_factory.mktemp("tls")))


def client_tls(ca: Path, cert_dir: Path | None) -> TLSSettings:
    cert = str(cert_dir / "cert.pem") if cert_dir else None
    key = str(cert_dir / "key.pem") if cert_dir else None
    return TLSSettings(ca=str(ca / "ca.pem"), cert=cert, key=key, verify=True)


Server = Callable[[TLSMaterial], AbstractContextManager[str]]
ClientTLS = Callable[[TLSMaterial], TLSSettings]


def plain(behaviour: loopback.Behaviour) -> Server:
    return lambda t: loopback.loopback_server(behaviour)


def mutual_tls(behaviour: loopback.Behaviour) -> Server:
    """A TLS engine that asks for a client certificate signed by its CA."""
    return lambda t: loopback.loopback_server(
        behaviour, loopback.tls_server_context(t.certs, client_ca=t.certs / "ca.pem")
    )


def closed_port(t: TLSMaterial) -> AbstractContextManager[str]:
    return nullcontext(f"tcp://127.0.0.1:{free_port()}")


def missing_socket(t: TLSMaterial) -> AbstractContextManager[str]:
    return nullcontext(f"unix://{t.certs}/no-such.sock")


OK = loopback.http_answer("200 OK", b'{"ApiVersion": "1.45"}')
V = "GET /version"
ROWS: list[tuple[str, Server, ClientTLS | None, str]] = [
    ("refused", closed_port, None, f"{V}: cannot connect to {{address}}: Connection refused"),
    (
        "no socket",
        missing_socket,
        None,
        f"{V}: cannot connect to {{address}}: No such file or directory",  # the socket path
    ),
    ("reset", plain(loopback.reset), None, f"{V}: the engine reset the connection"),
    (
        "closed",
        plain(loopback.close_silently),
        None,
        f"{V}: the engine closed the connection without an answer",
    ),
    ("hang", plain(loopback.hang), None, f"{V}: no answer within {TIMEOUT:g}s"),
    (
        "HTTP 500 with a JSON message",
        plain(loopback.http_answer("500 Internal Server Error", b'{"message": "boom\\n  now"}')),
        None,
        f'{V}: engine answered HTTP 500 "boom now"',  # what the engine sent, quoted
    ),
    (
        "HTTP 404 with text",
        plain(loopback.http_answer("404 Not Found", b"page not found", "text/plain")),
        None,
        f'{V}: engine answered HTTP 404 "page not found"',
    ),
    (
        "not HTTP",
        plain(loopback.answer(b"SSH-2.0-OpenSSH_9.2\r\n")),
        None,
        f"{V}: the engine's answer is not HTTP: 'SSH-2.0-OpenSSH_9.2'",
    ),
    (
        "not JSON",
        plain(loopback.http_answer("200 OK", b"<html>", "text/html")),
        None,
        f"{V}: the engine's answer is not valid JSON",
    ),
    (
        "TLS alert: no client certificate",
        mutual_tls(OK),
        lambda t: client_tls(t.certs, None),
        f"{V}: TLS handshake failed: the engine requires a client certificate "
        "(--docker.tls-cert/-key)",
    ),
    (
        "TLS alert: client certificate of another CA",
        mutual_tls(OK),
        lambda t: client_tls(t.certs, t.wrong),
        f"{V}: TLS handshake failed: the engine refused the client certificate "
        "(not one its CA signed?)",
    ),
    (
        "bad server certificate",
        mutual_tls(OK),
        lambda t: client_tls(t.wrong, t.wrong),
        f"{V}: TLS verification failed: self-signed certificate in certificate chain",
    ),
]


@pytest.mark.parametrize(("server", "client", "message"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])  # fmt: skip
def test_each_failure_cause_is_one_exact_line(
    tls: TLSMaterial, server: Server, client: ClientTLS | None, message: str
) -> None:
    with server(tls) as url:
        engine = EngineClient(EngineConfig(url, client(tls) if client else None), TIMEOUT)
        with pytest.raises(EngineError) as raised:
            engine.engine()
    address = url.split("://", 1)[1]  # unix://PATH names PATH, tcp://HOST:PORT HOST:PORT
    assert str(raised.value) == message.format(address=address)
    assert isinstance(raised.value.__cause__, Exception)  # the real exception stays chained


def test_mutual_tls_succeeds_with_the_right_certificates(tls: TLSMaterial) -> None:
    """The control row: the same server answers when the client does everything right."""
    with mutual_tls(OK)(tls) as url:
        engine = EngineClient(EngineConfig(url, client_tls(tls.certs, tls.certs)), TIMEOUT)
        assert engine.engine().api_version == "1.45"


def test_only_the_listed_endpoints_are_requested() -> None:
    assert ENDPOINTS == (
        "/version", "/info", "/images/json", "/containers/json", "/system/df", "/services", "/tasks"
    )  # fmt: skip
    engine = EngineClient(EngineConfig("unix:///nonexistent.sock"), TIMEOUT)
    with pytest.raises(ValueError, match="/events is not one of the engine endpoints"):
        engine._get("/events", None, TIMEOUT)


def busy_df(refusals: int, df: object) -> Raw:
    """/system/df refused as a pre-23 engine does while another df runs, ``refusals`` times."""
    left = [refusals]

    def write(handler: BaseHTTPRequestHandler) -> None:
        if left[0] == 0:
            body = json.dumps(df).encode()
            handler.send_response(200)
        else:
            left[0] -= 1
            body = json.dumps({"message": DF_BUSY}).encode()
            handler.send_response(500)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return Raw(write)


def test_a_df_refused_while_another_runs_is_retried_within_the_timeout() -> None:
    engine = synthetic_engine()
    try:
        df = load(SYNTHETIC_ANSWERS[SYSTEM_DF])
        engine.set(SYSTEM_DF, busy_df(3, df))
        client = EngineClient(EngineConfig(engine.url), 5.0)
        assert client.disk_usage(("image",), 5.0) == df
        assert engine.count(SYSTEM_DF) == 4
    finally:
        engine.close()


def test_a_df_refused_until_the_timeout_fails_with_the_engine_message() -> None:
    engine = synthetic_engine()
    try:
        engine.set(SYSTEM_DF, busy_df(1000, {}))
        client = EngineClient(EngineConfig(engine.url), 1.0)
        with pytest.raises(EngineError) as failed:
            client.disk_usage(("image",), 1.0)
        assert str(failed.value) == f'GET /system/df: engine answered HTTP 500 "{DF_BUSY}"'
        # retried (pauses of 0.1, 0.2, 0.4 s), then given up before the next pause (0.8 s)
        # would pass the 1 s timeout: at most 4 requests. A slow machine fits fewer, never more.
        assert 1 < engine.count(SYSTEM_DF) <= 4
    finally:
        engine.close()


def test_other_engine_errors_of_df_are_not_retried() -> None:
    engine = synthetic_engine()
    try:
        engine.set(SYSTEM_DF, None)  # 404
        client = EngineClient(EngineConfig(engine.url), 5.0)
        with pytest.raises(EngineError):
            client.disk_usage(("image",), 5.0)
        assert engine.count(SYSTEM_DF) == 1
    finally:
        engine.close()


def test_a_df_retry_that_times_out_names_the_whole_timeout() -> None:
    engine = synthetic_engine()
    refused = busy_df(1, load(SYNTHETIC_ANSWERS[SYSTEM_DF]))
    calls = [0]

    def refuse_then_hang(handler: BaseHTTPRequestHandler) -> None:
        calls[0] += 1
        if calls[0] == 1:
            refused.write(handler)
        else:
            engine.release.wait(5.0)  # the retry gets no answer

    try:
        engine.set(SYSTEM_DF, Raw(refuse_then_hang))
        client = EngineClient(EngineConfig(engine.url), 1.0)
        with pytest.raises(EngineError) as failed:
            client.disk_usage(("image",), 1.0)
        assert engine.count(SYSTEM_DF) == 2
        assert str(failed.value) == "GET /system/df: no answer within 1s"
    finally:
        engine.close()


DOCKER_CONTAINERS = [
    {"Id": f"{i:064x}", "Names": [f"/c{i}"], "State": "running", "Labels": {"a": "x", "b": "y"}}
    for i in range(500)
]


def stream_engine(answer: object) -> FakeEngine:
    return FakeEngine({"/version": load("synthetic/version-1.52.json"), "/containers/json": answer})


def test_containers_are_decoded_as_they_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "PIECE_BYTES", 4096)
    body = json.dumps(DOCKER_CONTAINERS, separators=(",", ":")).encode()  # Docker's own form
    streams: list[ContainerStream[ContainerRecord]] = []

    def stream() -> ContainerStream[ContainerRecord]:
        streams.append(ContainerStream(frozenset({"a"})))
        return streams[-1]

    engine = stream_engine(body)
    try:
        got = EngineClient(EngineConfig(engine.url), TIMEOUT).containers(incremental=stream)
    finally:
        engine.close()
    assert got == records.parse_containers(DOCKER_CONTAINERS, frozenset({"a"}))
    assert len(streams) == 1
    assert streams[0]._cut  # pieces were decoded before the answer's end


def test_a_streamed_answer_is_still_capped_and_errors_are_not_streamed() -> None:
    body = json.dumps(DOCKER_CONTAINERS, separators=(",", ":")).encode()
    engine = stream_engine(body)
    try:
        capped = EngineClient(EngineConfig(engine.url), TIMEOUT, max_answer_bytes=10_000)
        with pytest.raises(EngineError) as err:
            capped.containers(incremental=ContainerStream)
        assert str(err.value) == (
            "GET /containers/json: the answer is larger than 10000 bytes "
            "(--collect.max-answer-size); not read"
        )
        engine.set("/containers/json", busy_df(1, []))  # an HTTP 500 with a JSON message
        with pytest.raises(EngineError) as err:
            EngineClient(EngineConfig(engine.url), TIMEOUT).containers(incremental=ContainerStream)
        assert str(err.value) == f'GET /containers/json: engine answered HTTP 500 "{DF_BUSY}"'
        engine.set("/containers/json", b"[{]")
        with pytest.raises(EngineError) as err:
            EngineClient(EngineConfig(engine.url), TIMEOUT).containers(incremental=ContainerStream)
        assert str(err.value) == "GET /containers/json: the engine's answer is not valid JSON"
    finally:
        engine.close()
