"""The registry client against stand-in registries: what it sends, to whom, and how it
stays bounded. Real sockets, real HTTP; only the registry's behaviour is scripted."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from exporter.reference import parse_reference
from exporter.registry import (
    ACCEPT,
    MANIFEST_TYPES,
    EngineRegistryConfig,
    RegistryChecker,
    RegistryClient,
    RegistryError,
    parse_registry_config,
)
from exporter.registry_credentials import Credentials, CredentialStore
from tests.support.certs import make_pki
from tests.support.fake_registry import (
    DIGEST_A,
    DIGEST_B,
    Reply,
    fake_registry,
    manifest,
)
from tests.support.loopback import tls_server_context
from tests.support.paths import load

CREDS = Credentials("alice", "s3cret")
BASIC = "Basic " + base64.b64encode(b"alice:s3cret").decode()


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(host: str, creds: Credentials | None = None, **kwargs) -> RegistryClient:
    return RegistryClient(host, host, True, lambda: creds, **kwargs)


def ref(host: str, path: str = "team/app", tag: str = "v1"):
    return parse_reference(f"{host}/{path}:{tag}")


def test_one_head_with_the_four_manifest_types_and_the_digest_read():
    with fake_registry(lambda m, p, h: manifest(DIGEST_A)) as reg:
        answer = client_for(reg.host).head_manifest(ref(reg.host))
        assert answer.digest == DIGEST_A
        seen = reg.requests()
    assert [(s.method, s.path) for s in seen] == [("HEAD", "/v2/team/app/manifests/v1")]
    assert seen[0].headers["accept"] == ACCEPT
    assert set(ACCEPT.split(", ")) == set(MANIFEST_TYPES) and len(MANIFEST_TYPES) == 4
    assert "authorization" not in seen[0].headers


def test_a_missing_digest_header_is_an_error_not_a_get():
    with fake_registry(lambda m, p, h: Reply(200)) as reg:
        with pytest.raises(RegistryError, match="no valid Docker-Content-Digest"):
            client_for(reg.host).head_manifest(ref(reg.host))
        assert [s.method for s in reg.requests()] == ["HEAD"]


def test_head_refused_405_is_not_retried_as_get():
    with fake_registry(lambda m, p, h: Reply(405)) as reg:
        client = client_for(reg.host)
        with pytest.raises(RegistryError, match="HEAD not allowed"):
            client.head_manifest(ref(reg.host))
        assert [s.method for s in reg.requests()] == ["HEAD"]
        assert client.stats().requests == {("HEAD", "405"): 1}
        assert client.stats().success is False


def token_registry(lifetime: int | None, realm_host: str | None = None, tokens=None):
    """A registry whose HEAD wants a Bearer token issued by its own /token."""
    issued = tokens if tokens is not None else []

    def route(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        if path.startswith("/token"):
            token = f"tok{len(issued)}"
            issued.append(token)
            body: dict[str, object] = {"token": token}
            if lifetime is not None:
                body["expires_in"] = lifetime
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
        if headers.get("authorization") == f"Bearer {issued[-1] if issued else ''}":
            return manifest(DIGEST_B, {"ratelimit-remaining": "76;w=21600"})
        realm = f"http://{realm_host or route.host}/token"  # type: ignore[attr-defined]
        challenge = f'Bearer realm="{realm}",service="reg",scope="repository:team/app:pull"'
        return Reply(401, {"WWW-Authenticate": challenge})

    return route, issued


def test_token_auth_then_cached_until_it_expires():
    route, issued = token_registry(lifetime=300)
    clock = Clock()
    with fake_registry(route) as reg:
        route.host = reg.host
        client = client_for(reg.host, CREDS, clock=clock)
        assert client.head_manifest(ref(reg.host)).digest == DIGEST_B
        token_get = reg.requests("GET")[0]
        assert token_get.path == "/token?scope=repository%3Ateam%2Fapp%3Apull&service=reg"
        # the realm is the registry's own host: its credentials may go there
        assert token_get.headers["authorization"] == BASIC
        assert client.head_manifest(ref(reg.host)).digest == DIGEST_B
        assert len(reg.requests("GET")) == 1  # cached: no second token request
        clock.now += 300 * 0.9  # expired (renewed at 90% of its lifetime)
        assert client.head_manifest(ref(reg.host)).digest == DIGEST_B
        assert issued == ["tok0", "tok1"]
        stats = client.stats()
    # the expired token is renewed before the HEAD: no second 401 round trip
    assert stats.requests == {("HEAD", "401"): 1, ("HEAD", "200"): 3, ("GET", "200"): 2}
    assert stats.ratelimit_remaining == 76
    assert stats.last_check == clock.now


def test_a_token_without_expires_in_lives_60_seconds():
    route, issued = token_registry(lifetime=None)
    clock = Clock()
    with fake_registry(route) as reg:
        route.host = reg.host
        client = client_for(reg.host, clock=clock)
        client.head_manifest(ref(reg.host))
        clock.now += 53
        client.head_manifest(ref(reg.host))
        assert issued == ["tok0"]
        clock.now += 1
        client.head_manifest(ref(reg.host))
        assert issued == ["tok0", "tok1"]
        assert all("authorization" not in s.headers for s in reg.requests("GET"))


def test_credentials_never_go_to_a_plain_http_token_service_on_another_host():
    tokens: list[str] = []
    with fake_registry(token_registry(60, tokens=tokens)[0]) as issuer:
        route, _ = token_registry(60, realm_host=issuer.host, tokens=tokens)
        with fake_registry(route) as reg:
            route.host = reg.host
            assert client_for(reg.host, CREDS).head_manifest(ref(reg.host)).digest == DIGEST_B
        got = issuer.requests("GET")
    assert len(got) == 1 and "authorization" not in got[0].headers


def test_basic_auth():
    def route(method, path, headers):
        if headers.get("authorization") == BASIC:
            return manifest(DIGEST_A)
        return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})

    with fake_registry(route) as reg:
        assert client_for(reg.host, CREDS).head_manifest(ref(reg.host)).digest == DIGEST_A
        with pytest.raises(RegistryError, match=r"unauthorized \(HTTP 401\)"):
            client_for(reg.host, None).head_manifest(ref(reg.host))
        assert [s.headers.get("authorization") for s in reg.requests()] == [None, BASIC, None]


def test_a_redirect_to_another_host_is_not_followed_and_no_credential_leaves():
    with fake_registry(lambda m, p, h: manifest(DIGEST_A)) as other:

        def route(method, path, headers):
            if headers.get("authorization") == BASIC:
                return Reply(307, {"Location": f"http://{other.host}{path}"})
            return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})

        redirect = r"redirect \(HTTP 307\) not followed"
        with fake_registry(route) as reg, pytest.raises(RegistryError, match=redirect):
            client_for(reg.host, CREDS).head_manifest(ref(reg.host))
        assert other.requests() == []


def test_429_backs_off_until_retry_after():
    clock = Clock()
    replies = [Reply(429, {"Retry-After": "120"}), manifest(DIGEST_A)]
    with fake_registry(lambda m, p, h: replies.pop(0)) as reg:
        client = client_for(reg.host, clock=clock)
        with pytest.raises(RegistryError, match=r"rate limited \(HTTP 429\): next request in 120s"):
            client.head_manifest(ref(reg.host))
        clock.now += 119
        with pytest.raises(RegistryError, match="waiting for Retry-After"):
            client.head_manifest(ref(reg.host))
        assert len(reg.requests()) == 1  # no request while blocked
        clock.now += 1
        assert client.head_manifest(ref(reg.host)).digest == DIGEST_A
        assert len(reg.requests()) == 2


def test_a_10_mb_header_is_refused_unread():
    huge = {"X-Filler": "x" * (10 * 1024 * 1024), "Docker-Content-Digest": DIGEST_A}
    with fake_registry(lambda m, p, h: Reply(200, huge)) as reg:
        client = client_for(reg.host)
        with pytest.raises(RegistryError, match=r"HEAD manifest: request failed \(LineTooLong\)"):
            client.head_manifest(ref(reg.host))


def test_a_slow_drip_is_cut_at_the_deadline():
    slow = Reply(200, {"Docker-Content-Digest": DIGEST_A}, drip=0.05)  # ~5 s of headers
    with fake_registry(lambda m, p, h: slow) as reg:
        client = client_for(reg.host, timeout=1.0)
        with pytest.raises(RegistryError, match="HEAD manifest: no answer within 1s"):
            client.head_manifest(ref(reg.host))
        assert client.stats().requests == {("HEAD", "error"): 1}


def test_tls_with_the_certs_d_ca_despite_requests_ca_bundle(tmp_path: Path, monkeypatch):
    pki = make_pki(tmp_path / "pki")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/bundle.pem")
    tls = tls_server_context(pki.server_cert.parent)
    with fake_registry(lambda m, p, h: manifest(DIGEST_A), tls) as reg:
        certs_d = tmp_path / "certs.d"
        (certs_d / reg.host).mkdir(parents=True)
        (certs_d / reg.host / "ca.crt").write_bytes(pki.ca.read_bytes())
        good = RegistryClient(reg.host, reg.host, False, lambda: None, certs_dir=str(certs_d))
        assert good.head_manifest(ref(reg.host)).digest == DIGEST_A
        unknown_ca = RegistryClient(reg.host, reg.host, False, lambda: None, certs_dir="/nowhere")
        with pytest.raises(RegistryError, match="HEAD manifest: "):
            unknown_ca.head_manifest(ref(reg.host))


def test_plain_http_exactly_where_the_engine_uses_it():
    config = parse_registry_config(load("docker-20.10/info.json"))
    assert config.secure_by_name == {"docker.io": True}
    assert config.plain_http("127.0.0.1:5000")
    assert config.plain_http("localhost:5000")
    assert config.plain_http("127.1.2.3")
    assert not config.plain_http("docker.io")
    assert not config.plain_http("10.0.0.1:5000")
    assert not config.plain_http("registry.example:5000")
    marked = parse_registry_config(
        {
            "RegistryConfig": {
                "InsecureRegistryCIDRs": ["10.0.0.0/8"],
                "IndexConfigs": {"reg.lan:5000": {"Secure": False}},
            }
        }
    )
    assert marked.plain_http("reg.lan:5000") and marked.plain_http("10.1.1.1:443")
    assert not marked.plain_http("127.0.0.1:5000")
    assert parse_registry_config({}) == EngineRegistryConfig()  # Podman: the engine default


def test_the_checker_asks_once_per_tag_per_interval_whoever_asks():
    clock = Clock()
    with fake_registry(lambda m, p, h: manifest(DIGEST_A)) as reg:
        checker = RegistryChecker(CredentialStore(None), clock=clock)
        threads = [
            threading.Thread(target=checker.check, args=(ref(reg.host), True, 60.0))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert checker.check(ref(reg.host), True, 60.0).digest == DIGEST_A
        assert len(reg.requests()) == 1
        checker.check(ref(reg.host, tag="v2"), True, 60.0)  # another tag: its own request
        assert len(reg.requests()) == 2
        clock.now += 56  # within an interval less 5% (at most 5 s) of scheduling noise: reused
        checker.check(ref(reg.host), True, 60.0)
        assert len(reg.requests()) == 2
        clock.now += 1
        checker.check(ref(reg.host), True, 60.0)
        assert len(reg.requests()) == 3


def test_a_failing_registry_is_logged_once_per_cause(caplog):
    with fake_registry(lambda m, p, h: Reply(500)) as reg:
        clock = Clock()
        checker = RegistryChecker(CredentialStore(None), clock=clock)
        for _ in range(3):
            result = checker.check(ref(reg.host), True, 1.0)
            clock.now += 2
        assert (result.digest, result.error) == ("", "registry answered HTTP 500")
    warnings = [r.getMessage() for r in caplog.records if r.name == "exporter.registry"]
    assert warnings == [f"registry {reg.host}: registry answered HTTP 500"]


def test_a_dead_registry_fails_fast(tmp_path: Path):
    from tests.support.process import free_port

    host = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryError, match="HEAD manifest: connection refused"):
        client_for(host).head_manifest(ref(host))
    assert time.monotonic() - started >= 0  # reported, not asserted: the machine is loaded


def test_at_most_two_requests_at_a_time_per_registry():
    in_flight = [0, 0]  # now, most
    lock = threading.Lock()

    def route(method, path, headers):
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return manifest(DIGEST_A)

    with fake_registry(route) as reg:
        checker = RegistryChecker(CredentialStore(None))
        threads = [
            threading.Thread(target=checker.check, args=(ref(reg.host, tag=f"t{i}"), True, 60.0))
            for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(reg.requests()) == 6
    assert in_flight[1] == 2


def test_a_failing_registry_leaves_the_others_alone():
    with fake_registry(lambda m, p, h: Reply(503)) as down:  # noqa: SIM117 (Python 3.9)
        with fake_registry(lambda m, p, h: manifest(DIGEST_B)) as up:
            checker = RegistryChecker(CredentialStore(None))
            assert checker.check(ref(down.host), True, 60.0).error == "registry answered HTTP 503"
            assert checker.check(ref(up.host), True, 60.0).digest == DIGEST_B
            stats = checker.stats([down.host, up.host])
    assert (stats[down.host].success, stats[up.host].success) == (False, True)
    assert stats[up.host].requests == {("HEAD", "200"): 1}


def test_credentials_are_looked_up_only_when_the_registry_asks():
    lookups: list[int] = []

    def creds():
        lookups.append(1)  # a credential helper is a process: not run for nothing
        return CREDS

    route, _ = token_registry(lifetime=300)
    with fake_registry(lambda m, p, h: manifest(DIGEST_A)) as open_reg:
        RegistryClient(open_reg.host, open_reg.host, True, creds).head_manifest(ref(open_reg.host))
    assert lookups == []
    with fake_registry(route) as reg:
        route.host = reg.host
        client = RegistryClient(reg.host, reg.host, True, creds)
        client.head_manifest(ref(reg.host))
        client.head_manifest(ref(reg.host))  # the token is cached: no lookup
    assert lookups == [1]
