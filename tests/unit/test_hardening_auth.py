"""Issue 20, items 6 to 8: basic auth that strangers cannot abuse.

A password over bcrypt's 72 bytes gets 401 (it used to close the connection); an unknown
user costs a bcrypt check of the configured cost; wrong passwords have their own bounded
budget and are remembered, so a real scrape is never answered 503 while they hammer the
door. The timing figures (medians) are in tests/bench_hardening.py, not asserted here.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import bcrypt
import pytest
import requests

from exporter.server import HTTPServer, Limits
from exporter.webconfig import BasicAuth
from tests.support.wait import wait_until


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"docker_up 1\n"]


def no_connections(server: HTTPServer) -> bool:
    return not server.connections


@pytest.fixture
def served() -> Iterator[Callable[..., HTTPServer]]:
    servers: list[HTTPServer] = []

    def serve(users: dict[str, bytes], limits: Limits | None = None) -> HTTPServer:
        server = HTTPServer(app, "127.0.0.1", 0, limits or Limits(), auth=BasicAuth(users))
        server.start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        # the clients have closed: let the server see it before its loop stops
        wait_until(partial(no_connections, server), what="the server's connections closed")
        server.shutdown()


def bcrypt_cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])  # $2b$12$...


def hashed(password: bytes, cost: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost))


def test_a_password_longer_than_72_bytes_is_answered_401(served):
    server = served({"prometheus": hashed(b"secret", 4)})
    url = f"http://127.0.0.1:{server.port}/metrics"
    for password in ("x" * 73, "secret" + "x" * 200):
        answer = requests.get(url, auth=("prometheus", password), timeout=10)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="docker-inventory-exporter"'
    assert requests.get(url, auth=("prometheus", "secret"), timeout=10).status_code == 200
    auth = BasicAuth({"prometheus": hashed(b"secret", 4)})
    header = "Basic " + base64.b64encode(b"prometheus:" + b"y" * 100).decode()
    assert auth.check(header) is False
    assert auth.bcrypt_checks == 0  # refused before bcrypt, as exporter-toolkit does


@pytest.mark.parametrize("costs", [(12,), (6, 6, 11), (5,)])
def test_an_unknown_user_costs_what_a_configured_one_does(costs):
    users = {f"u{i}": hashed(b"pw", cost) for i, cost in enumerate(costs)}
    auth = BasicAuth(users)
    common = max(costs, key=lambda c: (costs.count(c), c))
    assert bcrypt_cost(auth._dummy) == common


def test_a_repeated_wrong_password_is_checked_once():
    auth = BasicAuth({"prometheus": hashed(b"secret", 4)})
    wrong = "Basic " + base64.b64encode(b"prometheus:wrong").decode()
    stranger = "Basic " + base64.b64encode(b"nobody:wrong").decode()
    assert [auth.check(wrong) for _ in range(50)] == [False] * 50
    assert [auth.check(stranger) for _ in range(50)] == [False] * 50
    assert auth.bcrypt_checks == 2


def test_wrong_passwords_never_take_the_scrapes_budget(served):
    # --web.max-requests 1: before issue 20, one bcrypt check in the pool was enough to
    # answer the real scrape 503
    server = served({"prometheus": hashed(b"secret", 10)}, Limits(max_requests=1))
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert requests.get(url, auth=("prometheus", "secret"), timeout=10).status_code == 200
    stop = threading.Event()
    strangers: list[int] = []

    def stranger(n: int) -> None:
        with requests.Session() as session:
            i = 0
            while not stop.is_set():
                i += 1  # a new password each time: no cache helps
                answer = session.get(url, auth=("prometheus", f"guess-{n}-{i}"), timeout=30)
                strangers.append(answer.status_code)

    threads = [threading.Thread(target=stranger, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: server.auth_in_flight >= 1, what="bcrypt checks running")
        scrapes = []
        deadline = time.monotonic() + 3.0
        with requests.Session() as session:
            while time.monotonic() < deadline:
                answer = session.get(url, auth=("prometheus", "secret"), timeout=30)
                scrapes.append(answer.status_code)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len(scrapes) > 0 and set(scrapes) == {200}, scrapes
    assert set(strangers) <= {401, 429} and 401 in strangers
    assert server.auth_in_flight == 0 and server.in_flight == 0
