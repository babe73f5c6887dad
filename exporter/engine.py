"""The engine client: the docker SDK's low-level APIClient, used as a requests.Session.

One ``EngineClient`` per scheduled job, so a slow ``/system/df`` never holds a connection
the inventory needs. The SDK client is created lazily inside a collection (its constructor
would otherwise fail at start-up when the engine is down) and thrown away after any
failure, so the next run reconnects and re-reads ``/version``.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import requests
import urllib3

from .config import EngineConfig
from .records import EngineDataError, EngineInfo, parse_version

log = logging.getLogger(__name__)

T = TypeVar("T")

VERSION_TTL = 3600.0
READ_CHUNK = 1 << 16  # /version is re-read hourly and after every failure

VERSION = "/version"
IMAGES = "/images/json"
CONTAINERS = "/containers/json"
SYSTEM_DF = "/system/df"
# Every path this client requests; the socket-proxy config and the README list exactly these.
ENDPOINTS = (VERSION, IMAGES, CONTAINERS, SYSTEM_DF)


# OpenSSL alert reasons a TLS server sends when it rejects (or misses) the client certificate
_CLIENT_CERT_REFUSED = frozenset(
    {
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
    }
)


class EngineError(Exception):
    """A failed engine request; str() is one line naming the cause."""


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while exc.__context__ is not None or exc.__cause__ is not None:
        if id(exc) in seen:
            break
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def describe(exc: BaseException, where: str, timeout: float, client_cert: bool = False) -> str:
    """One line for a failed request to ``where``; ``client_cert``: whether one was sent."""
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{where}: no answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.SSLError):
        root = _root_cause(exc)
        if isinstance(root, ssl.SSLCertVerificationError):
            return f"{where}: TLS verification failed: {root.verify_message or root.reason}"
        reason = str(getattr(root, "reason", None) or root)
        # A refused client certificate shows as an alert or, under TLS 1.3, as often as not
        # as a bare EOF: one cause, so one message.
        refused = any(code in reason for code in _CLIENT_CERT_REFUSED)
        if refused or "EOF occurred" in reason or "UNEXPECTED_EOF" in reason:
            reason = (
                "the engine refused the client certificate (not one its CA signed?)"
                if client_cert
                else "the engine requires a client certificate (--docker.tls-cert/-key)"
            )
        return f"{where}: TLS handshake failed: {reason.split(' (_ssl')[0]}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        root = _root_cause(exc)
        # RemoteDisconnected is both a BadStatusLine and a ConnectionResetError: first.
        if isinstance(root, http.client.RemoteDisconnected):
            return f"{where}: the engine closed the connection without an answer"
        if isinstance(root, ConnectionResetError):
            return f"{where}: the engine reset the connection"
        if isinstance(root, http.client.BadStatusLine):
            return f"{where}: the engine's answer is not HTTP: {str(root).strip()[:100]!r}"
        if isinstance(root, OSError) and root.strerror:
            return f"{where}: cannot connect: {root.strerror}"
        return f"{where}: cannot connect: {str(root).splitlines()[0][:200]}"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        message = ""
        try:
            body = exc.response.json()
            if isinstance(body, dict):
                message = str(body.get("message", ""))
        except ValueError:
            message = exc.response.text[:200]
        message = " ".join(message.split())
        return f"{where}: engine answered HTTP {exc.response.status_code} {message}".rstrip()
    if isinstance(exc, (ValueError, json.JSONDecodeError)):
        return f"{where}: the engine's answer is not valid JSON"
    return f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class EngineClient:
    def __init__(self, config: EngineConfig, timeout: float) -> None:
        self.config = config
        self.timeout = timeout
        self._api: Any = None
        self._engine: EngineInfo | None = None
        self._engine_read_at = 0.0

    def _session(self) -> Any:
        if self._api is None:
            tls: Any = False
            settings = self.config.tls
            if settings is not None:
                client_cert = (settings.cert, settings.key) if settings.cert else None
                tls = docker.tls.TLSConfig(
                    client_cert=client_cert, ca_cert=settings.ca, verify=settings.verify
                )
            # A fixed version makes the constructor offline; paths below use the version
            # the engine reports, so every engine from API 1.24 up is talked to in its own.
            api = docker.APIClient(
                base_url=self.config.host, version="1.24", timeout=self.timeout, tls=tls
            )
            # requests would let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the engine's CA,
            # and send a tcp:// engine's traffic through HTTP(S)_PROXY. Neither is wanted.
            api.trust_env = False
            if settings is not None and settings.ca and settings.verify:
                api.verify = settings.ca
            self._api = api
        return self._api

    def close(self) -> None:
        if self._api is not None:
            try:
                self._api.close()
            finally:
                self._api = None
                self._engine = None

    def _get(
        self,
        path: str,
        params: dict[str, Any] | None,
        timeout: float,
        decode: Callable[[bytearray], T] = json.loads,
    ) -> T:
        api = self._session()
        if path not in ENDPOINTS:
            raise ValueError(f"{path} is not one of the engine endpoints {ENDPOINTS}")
        version = self._engine.api_version if self._engine and path != VERSION else ""
        url = f"{api.base_url}{'/v' + version if version else ''}{path}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = api.get(url, params=params, timeout=timeout, stream=True)
            response.raise_for_status()
            # Read into one buffer that grows in place: .content would hold the answer
            # twice (its chunks, then their join), 13 MB each for 10k containers.
            body = bytearray()
            for chunk in response.iter_content(READ_CHUNK):
                body += chunk
            return decode(body)
        except EngineDataError:
            raise  # valid JSON of the wrong shape: the decoder's own one-line message
        except Exception as exc:
            self.close()
            tls = self.config.tls
            sent_cert = tls is not None and tls.cert is not None
            raise EngineError(describe(exc, f"GET {path}", timeout, sent_cert)) from exc

    def engine(self) -> EngineInfo:
        """The engine's identity and API version, cached for VERSION_TTL."""
        now = time.monotonic()
        if self._engine is None or now - self._engine_read_at > VERSION_TTL:
            info = parse_version(self._get(VERSION, None, self.timeout))
            self._engine = info
            self._engine_read_at = now
        return self._engine

    def api_at_least(self, version: str) -> bool:
        have = self.engine().api_version
        try:
            return tuple(map(int, have.split("."))) >= tuple(map(int, version.split(".")))
        except ValueError:
            return False

    def images(self, decode: Callable[[bytearray], T] = json.loads) -> T:
        """/images/json, decoded by ``decode`` from the answer's bytes."""
        self.engine()
        return self._get(IMAGES, None, self.timeout, decode)

    def containers(
        self,
        size: bool = False,
        timeout: float | None = None,
        decode: Callable[[bytearray], T] = json.loads,
    ) -> T:
        """/containers/json?all=1, decoded by ``decode`` from the answer's bytes."""
        self.engine()
        params = {"all": "1", "size": "1"} if size else {"all": "1"}
        return self._get(CONTAINERS, params, timeout or self.timeout, decode)

    def disk_usage(self, types: tuple[str, ...] | None, timeout: float) -> Any:
        """/system/df; ``types`` (API 1.42+) limits it to those object types."""
        params = {"type": list(types)} if types and self.api_at_least("1.42") else None
        return self._get(SYSTEM_DF, params, timeout)
