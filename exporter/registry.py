"""The registry client: what a tag points to upstream, asked with one HEAD request.

``HEAD /v2/<repository>/manifests/<tag>`` with the four manifest types in ``Accept``
answers the digest in ``Docker-Content-Digest``; nothing is ever pulled, and a registry
that refuses HEAD is not asked with GET (a GET counts against Docker Hub's pull limit).
Without ``Accept``, distribution 2.8 converts the manifest to schema 1 with another digest.

Auth is the distribution spec's: a 401 with ``WWW-Authenticate: Bearer realm,service,
scope`` gets a token from the realm (with the registry's credentials, only over HTTPS or
to the registry's own host), cached until it expires; ``Basic`` gets the credentials.
No redirect is followed, so credentials never reach another host.

A registry is reached as the engine reaches it (``plain_http``): plain HTTP for those the
engine's /info ``RegistryConfig`` marks insecure, HTTPS with verification for the rest,
with ``<certs.d>/HOST:PORT/ca.crt`` as CA when present; ``verify`` is passed on every
request, so REQUESTS_CA_BUNDLE cannot replace that CA.

Bounds: a total deadline per request (a slow drip is cut), http.client's 64 KiB per
header line and 100 header lines, at most ``CONCURRENCY`` requests per registry at a
time, and after a 429 no request to that registry before its ``Retry-After``.

``RegistryChecker`` is the exporter-wide cache above the targets: one request per
(registry, repository, tag) per interval, whichever targets ask.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from .engine import quoted
from .reference import Reference
from .registry_credentials import Credentials, CredentialsError, CredentialStore

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
DEFAULT_CERTS_DIR = "/etc/docker/certs.d"
CONCURRENCY = 2  # requests in flight per registry
DEFAULT_RETRY_AFTER = 60.0  # a 429 without Retry-After
LONGEST_RETRY_AFTER = 6 * 3600.0
TOKEN_DEFAULT_LIFETIME = 60.0  # the spec's default expires_in
TOKEN_BODY_MAX = 1 << 20
USER_AGENT = "docker-inventory-exporter"
FRESH_SLACK = 0.05  # of the interval: an answer is reused until then, for scheduling noise
MAX_FRESH_SLACK = 5.0
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|sha384:[0-9a-f]{96}")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


class RegistryError(Exception):
    """A check that failed; ``cause`` stays the same across failures of one kind."""

    def __init__(
        self, cause: str, detail: str = "", unreachable: bool = False, not_found: bool = False
    ) -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        # no answer at all, or a 429: the registry's other tags would fare no better now
        self.unreachable = unreachable
        self.not_found = not_found  # an HTTP 404: the registry answered that it has none


@dataclass(frozen=True)
class EngineRegistryConfig:
    """How the engine reaches registries: /info's RegistryConfig."""

    insecure_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
    )
    secure_by_name: Mapping[str, bool] = field(default_factory=dict)

    def plain_http(self, registry: str) -> bool:
        """The engine's isSecureIndex, negated: listed in IndexConfigs, or an address in
        an insecure CIDR. Host names are resolved only for ``localhost``: no DNS here."""
        if registry in self.secure_by_name:
            return not self.secure_by_name[registry]
        host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
        if registry.startswith("["):
            host = registry[1:].split("]", 1)[0]
        if host == "localhost":
            host = "127.0.0.1"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.insecure_cidrs)


def parse_registry_config(info: object) -> EngineRegistryConfig:
    """/info's RegistryConfig; the engine defaults where it is missing (Podman)."""
    config = info.get("RegistryConfig") if isinstance(info, dict) else None
    if not isinstance(config, dict):
        return EngineRegistryConfig()
    cidrs = []
    for text in config.get("InsecureRegistryCIDRs") or ():
        with contextlib.suppress(ValueError, TypeError):
            cidrs.append(ipaddress.ip_network(str(text), strict=False))
    secure = {}
    indexes = config.get("IndexConfigs")
    if isinstance(indexes, dict):
        for name, entry in indexes.items():
            if isinstance(entry, dict) and isinstance(entry.get("Secure"), bool):
                secure[str(name)] = entry["Secure"]
    return EngineRegistryConfig(tuple(cidrs), secure)


@dataclass(frozen=True)
class Answer:
    digest: str
    ratelimit_remaining: int | None


@dataclass(frozen=True)
class RegistryStats:
    """What the docker_registry_* series report of one registry."""

    success: bool | None  # None before the first check
    last_check: float | None  # clock time of the last successful check
    requests: Mapping[tuple[str, str], int]  # (method, code) -> count
    ratelimit_remaining: int | None


def _retry_after(value: str | None, now: float) -> float:
    if not value:
        return DEFAULT_RETRY_AFTER
    if value.strip().isdigit():
        seconds = float(value.strip())
    else:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
    return min(max(seconds, 1.0), LONGEST_RETRY_AFTER)


def _ratelimit(value: str | None) -> int | None:
    """Docker Hub's ``ratelimit-remaining: 76;w=21600``."""
    if not value:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


class RegistryClient:
    """One registry, as the engine reaches it. Thread-safe; one per registry per exporter."""

    def __init__(
        self,
        registry: str,
        api_host: str,
        plain_http: bool,
        credentials: Callable[[], Credentials | None],
        timeout: float = 10.0,
        certs_dir: str = DEFAULT_CERTS_DIR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.base = f"{'http' if plain_http else 'https'}://{api_host}"
        self.api_host = api_host
        self.plain_http = plain_http
        self.ca_file = Path(certs_dir) / api_host / "ca.crt"
        self.credentials = credentials
        self.timeout = timeout
        self.clock = clock
        self._slots = threading.BoundedSemaphore(CONCURRENCY)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expiry)
        self._challenge: tuple[str, dict[str, str]] | None = None  # the last 401's
        self._blocked_until = 0.0
        self._requests: dict[tuple[str, str], int] = {}
        self._success: bool | None = None
        self._last_check: float | None = None
        self._ratelimit: int | None = None
        self._local = threading.local()

    @property
    def verify(self) -> bool | str:
        """The certs.d CA as a path when there is one (looked for on every request, as the
        engine does on every pull): requests never swaps an explicit path for the CA bundle
        of REQUESTS_CA_BUNDLE, as it does with ``True``."""
        if not self.plain_http and self.ca_file.is_file():
            return str(self.ca_file)
        return True

    # --- bookkeeping -------------------------------------------------------------------
    def stats(self) -> RegistryStats:
        with self._lock:
            return RegistryStats(
                self._success, self._last_check, dict(self._requests), self._ratelimit
            )

    def _count(self, method: str, code: str) -> None:
        with self._lock:
            self._requests[(method, code)] = self._requests.get((method, code), 0) + 1

    def _session(self) -> tuple[requests.Session, list[Any]]:
        """This thread's session, and the holder of the connection its request uses (the
        watchdog, in another thread, shuts that connection down at the deadline)."""
        held: tuple[requests.Session, list[Any]] | None = getattr(self._local, "session", None)
        if held is not None:
            return held
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        in_flight: list[Any] = [None]
        for adapter in session.adapters.values():
            get_pool = adapter.get_connection_with_tls_context  # type: ignore[attr-defined]

            def tracked_pool(*args: Any, _get_pool: Any = get_pool, **kwargs: Any) -> Any:
                pool = _get_pool(*args, **kwargs)
                if not getattr(pool, "_exporter_tracked", False):
                    get_conn = pool._get_conn

                    def tracked_get_conn(*a: Any, **kw: Any) -> Any:
                        conn = get_conn(*a, **kw)
                        in_flight[0] = conn
                        return conn

                    pool._get_conn = tracked_get_conn
                    pool._exporter_tracked = True
                return pool

            adapter.get_connection_with_tls_context = tracked_pool  # type: ignore[attr-defined]
        self._local.session = (session, in_flight)
        return session, in_flight

    # --- one request, with a total deadline ------------------------------------------
    def _request(
        self, method: str, url: str, headers: Mapping[str, str], what: str
    ) -> requests.Response:
        """One request, no redirect followed, cut at ``timeout`` however slowly it drips."""
        session, in_flight = self._session()
        in_flight[0] = None
        fired = threading.Event()

        def cut() -> None:
            fired.set()
            sock = getattr(in_flight[0], "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(self.timeout, cut)
        watchdog.daemon = True
        watchdog.start()
        code = "error"
        try:
            response = session.request(
                method,
                url,
                headers=dict(headers),
                timeout=self.timeout,
                allow_redirects=False,
                verify=self.verify,
                stream=method == "GET",
            )
            if fired.is_set():  # cut mid-headers: what was read is not an answer
                raise RegistryError(f"{what}: no answer within {self.timeout:g}s", "", True)
            code = str(response.status_code)
            if method == "GET":
                with response:
                    body = response.raw.read(TOKEN_BODY_MAX + 1, decode_content=True)
                response._content = body
            return response
        except RegistryError:
            raise
        except Exception as exc:
            if fired.is_set():
                raise RegistryError(
                    f"{what}: no answer within {self.timeout:g}s", "", True
                ) from exc
            raise RegistryError(f"{what}: {_describe(exc)}", "", True) from exc
        finally:
            watchdog.cancel()
            self._count(method, code)
            if fired.is_set() or code == "error":
                session.close()
                self._local.session = None

    # --- auth -----------------------------------------------------------------------
    def _token(self, challenge: Mapping[str, str], scope: str, creds: Credentials | None) -> str:
        realm = challenge.get("realm", "")
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise RegistryError("token realm is not an http(s) URL", quoted(realm))
        params = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        headers: dict[str, str] = {}
        # The registry's credentials go to its token service only over HTTPS, or to the
        # registry's own host (as the engine does); never to a plain-HTTP stranger.
        if creds is not None and (
            realm_parts.scheme == "https" or realm_parts.netloc == self.api_host
        ):
            headers["Authorization"] = _basic(creds)
        url = requests.Request("GET", realm, params=params).prepare().url or realm
        response = self._request("GET", url, headers, "token request")
        if response.status_code != 200:
            raise RegistryError(
                f"token request answered HTTP {response.status_code}", realm_parts.netloc
            )
        content = response.content
        if len(content) > TOKEN_BODY_MAX:
            raise RegistryError("token answer larger than 1 MiB")
        try:
            answer = json.loads(content)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError("token answer holds no token")
        lifetime = answer.get("expires_in")
        if not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = TOKEN_DEFAULT_LIFETIME
        # renewed a little early: a token must not expire between the cache and the registry
        expiry = self.clock() + float(lifetime) * 0.9
        with self._lock:
            self._tokens[scope] = (token, expiry)
        return token

    def _cached_token(self, scope: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(scope)
        if cached is None or cached[1] <= self.clock():
            return None
        return cached[0]

    # --- the check ------------------------------------------------------------------
    def head_manifest(self, ref: Reference) -> Answer:
        """The digest the registry holds for ``ref``'s tag (or, for a ``ref`` by digest,
        that digest when the registry has that manifest); RegistryError otherwise."""
        now = self.clock()
        with self._lock:
            blocked = self._blocked_until
        if now < blocked:
            raise RegistryError("rate limited (HTTP 429)", "waiting for Retry-After", True)
        with self._slots:
            try:
                answer = self._head(ref)
            except RegistryError as exc:
                with self._lock:
                    # "no such manifest" for a digest is an answer: the registry works
                    self._success = bool(exc.not_found and ref.digest)
                    if self._success:
                        self._last_check = self.clock()
                raise
        with self._lock:
            self._success = True
            self._last_check = self.clock()
            if answer.ratelimit_remaining is not None:
                self._ratelimit = answer.ratelimit_remaining
        return answer

    def _head(self, ref: Reference) -> Answer:
        url = f"{self.base}/v2/{ref.path}/manifests/{ref.tag or ref.digest}"
        scope = f"repository:{ref.path}:pull"
        headers = {"Accept": ACCEPT}
        looked_up: list[Credentials | None] = []

        def creds() -> Credentials | None:
            """Looked up only when needed (a helper is a process), at most once per check."""
            if not looked_up:
                try:
                    looked_up.append(self.credentials())
                except CredentialsError as exc:
                    raise RegistryError(str(exc)) from None
            return looked_up[0]

        token = self._cached_token(scope)
        with self._lock:
            known = self._challenge
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif known is not None and known[0] == "bearer":
            # the registry wants a token, and ours expired: no 401 round trip to learn it again
            params = {k: v for k, v in known[1].items() if k != "scope"}
            headers["Authorization"] = f"Bearer {self._token(params, scope, creds())}"
        elif known is not None and known[0] == "basic" and (basic := creds()) is not None:
            headers["Authorization"] = _basic(basic)
        response = self._request("HEAD", url, headers, "HEAD manifest")
        if response.status_code == 401:  # once: a fresh token, or the credentials
            scheme, challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            with self._lock:
                self._challenge = (scheme, challenge)
            if scheme == "bearer":
                headers["Authorization"] = f"Bearer {self._token(challenge, scope, creds())}"
            elif scheme == "basic" and (basic := creds()) is not None:
                headers["Authorization"] = _basic(basic)
            else:
                raise RegistryError("unauthorized (HTTP 401)", "no credentials for it")
            response = self._request("HEAD", url, headers, "HEAD manifest")
        return self._answer(response)

    def _answer(self, response: requests.Response) -> Answer:
        status = response.status_code
        remaining = _ratelimit(response.headers.get("ratelimit-remaining"))
        if remaining is not None:
            with self._lock:
                self._ratelimit = remaining
        if status == 429:
            pause = _retry_after(response.headers.get("Retry-After"), self.clock())
            with self._lock:
                self._blocked_until = self.clock() + pause
            raise RegistryError("rate limited (HTTP 429)", f"next request in {pause:g}s", True)
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            raise RegistryError(f"redirect (HTTP {status}) not followed", f"to {quoted(location)}")
        if status == 405:
            raise RegistryError("HEAD not allowed (HTTP 405); no GET is made instead")
        if status == 401:
            raise RegistryError("unauthorized (HTTP 401)")
        if status == 404:
            raise RegistryError("no such tag or repository (HTTP 404)", not_found=True)
        if status != 200:
            raise RegistryError(f"registry answered HTTP {status}")
        digest = response.headers.get("Docker-Content-Digest", "").strip()
        if not _DIGEST_RE.fullmatch(digest):
            raise RegistryError("the answer has no valid Docker-Content-Digest")
        return Answer(digest, remaining)


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _describe(exc: BaseException) -> str:
    """The root cause of a failed request, one short line, no URL (it may carry a token)."""
    root: BaseException = exc
    seen = {id(root)}
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        root = nxt
    name = type(root).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    if isinstance(exc, requests.exceptions.ConnectionError) and "refused" in str(exc).lower():
        return "connection refused"
    return f"request failed ({name})"


@dataclass(frozen=True)
class TagCheck:
    """The registry's answer for one (registry, repository, tag), and when it was asked."""

    digest: str  # '' when the check failed
    error: str  # the failure's cause, '' on success
    checked_at: float
    unreachable: bool = False  # the failure was the registry's, not the tag's
    not_found: bool = False  # the registry answered 404: no such tag (or manifest)


class RegistryChecker:
    """The exporter-wide cache of registry answers, above every target.

    ``check`` asks the registry only when no answer for that tag is younger than
    ``max_age``; concurrent callers for one tag wait for the one request in flight.
    A failure is logged once per registry and cause.
    """

    def __init__(
        self,
        credentials: CredentialStore,
        timeout: float = 10.0,
        certs_dir: str = DEFAULT_CERTS_DIR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.certs_dir = certs_dir
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, bool], RegistryClient] = {}
        self._cache: dict[tuple[str, str, str], TagCheck] = {}
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._logged: dict[str, str] = {}  # registry -> last cause logged

    def client(self, ref: Reference, plain_http: bool) -> RegistryClient:
        key = (ref.registry, plain_http)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                registry = ref.registry
                client = RegistryClient(
                    registry,
                    ref.api_host,
                    plain_http,
                    lambda: self.credentials.lookup(registry),
                    self.timeout,
                    self.certs_dir,
                    self.clock,
                )
                self._clients[key] = client
            return client

    def check(self, ref: Reference, plain_http: bool, max_age: float) -> TagCheck:
        """The registry's answer for ``ref``'s tag, or for its digest when it has no tag
        (a 404 for a digest is an answer, not a failure: it is neither logged nor counted
        against the registry's success)."""
        key = (ref.registry, ref.path, ref.tag or ref.digest)
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                cached = self._cache.get(key)
            # A run falls due an interval after the last one, give or take scheduling noise:
            # an answer that much younger than the interval is still this interval's.
            fresh_for = max_age - min(max_age * FRESH_SLACK, MAX_FRESH_SLACK)
            if cached is not None and self.clock() - cached.checked_at < fresh_for:
                return cached
            started = self.clock()
            try:
                answer = self.client(ref, plain_http).head_manifest(ref)
            except RegistryError as exc:
                if not (exc.not_found and ref.digest):
                    self._log(ref.registry, exc)
                result = TagCheck("", exc.cause, started, exc.unreachable, exc.not_found)
            else:
                if self._logged.pop(ref.registry, None) is not None:
                    log.info("registry %s: checks recovered", ref.registry)
                result = TagCheck(answer.digest, "", started)
            with self._lock:
                self._cache[key] = result
            return result

    def _log(self, registry: str, exc: RegistryError) -> None:
        with self._lock:
            first = self._logged.get(registry) != exc.cause
            self._logged[registry] = exc.cause
        if first:
            log.warning("registry %s: %s", registry, exc)

    def stats(self, registries: Iterable[str]) -> dict[str, RegistryStats]:
        wanted = set(registries)
        with self._lock:
            clients = [c for (name, _), c in self._clients.items() if name in wanted]
        return {c.registry: c.stats() for c in clients}

    def forget(self, keep: Callable[[tuple[str, str, str]], bool]) -> None:
        """Drop cached answers no target asks for any more."""
        with self._lock:
            for key in [k for k in self._cache if not keep(k)]:
                del self._cache[key]


_shared: RegistryChecker | None = None
_shared_lock = threading.Lock()


def configure_shared_checker(certs_dir: str, credentials: CredentialStore) -> None:
    """Set up the exporter-wide checker (the CLI, once at start)."""
    global _shared
    with _shared_lock:
        _shared = RegistryChecker(credentials, certs_dir=certs_dir)


def shared_checker() -> RegistryChecker:
    """The one checker every target's registry job asks."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RegistryChecker(CredentialStore(None))
        return _shared
