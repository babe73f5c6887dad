"""The engine client: the docker SDK's low-level APIClient, used as a requests.Session.

One ``EngineClient`` per scheduled job, so a slow ``/system/df`` never holds a connection
the inventory needs. The SDK client is created lazily inside a collection (its constructor
would otherwise fail at start-up when the engine is down) and thrown away after any
failure, so the next run reconnects and re-reads ``/version``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import docker
import requests
import urllib3

from .config import DEFAULT_MAX_ANSWER_BYTES, EngineConfig
from .records import EngineDataError, EngineInfo, parse_info, parse_version, swarm_manager

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Incremental(Protocol[T_co]):
    """Decodes an answer while it is read: ``feed`` each piece of bytes, then ``end``."""

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> T_co: ...


VERSION_TTL = 3600.0  # /version and /info are re-read hourly and after every failure
READ_CHUNK = 1 << 16

# The refusal of a concurrent /system/df by engines before Docker 23, and the pauses
# between retries of it.
DF_BUSY = "a disk usage operation is already running"
DF_BUSY_FIRST_PAUSE = 0.1
DF_BUSY_LONGEST_PAUSE = 2.0

VERSION = "/version"
INFO = "/info"
IMAGES = "/images/json"
CONTAINERS = "/containers/json"
SYSTEM_DF = "/system/df"
SERVICES = "/services"  # the swarm job, on Swarm managers only
TASKS = "/tasks"
# Every path this client requests; the socket-proxy config and the README list exactly these.
ENDPOINTS = (VERSION, INFO, IMAGES, CONTAINERS, SYSTEM_DF, SERVICES, TASKS)
# The registry job's one per-object request: a container whose tag moved, inspected once.
_INSPECT = re.compile(r"/containers/[0-9a-f]{12,64}/json")


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
    """A failed engine request; str() is one line naming the cause.

    ``cause`` is stable from one failure to the next of the same kind (it is what "log
    once per cause" compares); ``detail`` is what the engine sent, quoted, and may vary.
    """

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause} {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


def quoted(text: str, limit: int = 200) -> str:
    """Engine-sent text for a log line: JSON-quoted, so a newline cannot split the line."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return json.dumps(cut, ensure_ascii=False)


class _Deadline(Exception):
    """The watchdog cut the connection: the request outlived its total deadline."""


class _TooBig(Exception):
    pass


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


def engine_address(host: str) -> str:
    """What a "cannot connect" line names: the socket path, or host:port."""
    for scheme in ("unix://", "tcp://"):
        if host.startswith(scheme):
            return host[len(scheme) :]
    return host


def describe(
    exc: BaseException, where: str, timeout: float, client_cert: bool = False, host: str = ""
) -> str:
    """One line for a failed request to ``where``; ``client_cert``: whether one was sent;
    ``host``: the engine address, named when no connection could be made."""
    if isinstance(exc, EngineError):
        return str(exc)
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
        to = f" to {engine_address(host)}" if host else ""
        if isinstance(root, OSError) and root.strerror:
            return f"{where}: cannot connect{to}: {root.strerror}"
        return f"{where}: cannot connect{to}: {str(root).splitlines()[0][:200]}"
    if isinstance(exc, (ValueError, json.JSONDecodeError)):
        return f"{where}: the engine's answer is not valid JSON"
    return f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _error_message(body: bytes | bytearray) -> str:
    """The engine's error message, quoted: it may vary (request ids), so it is detail."""
    text = body[:4096].decode("utf-8", "replace")
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
    except ValueError:
        pass
    return quoted(" ".join(text.split())) if text.strip() else ""


class EngineClient:
    def __init__(
        self,
        config: EngineConfig,
        timeout: float,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        identity_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        # /version and /info: small answers, asked with the short (inventory) timeout even
        # by the df client, whose own timeout is minutes
        self.identity_timeout = identity_timeout or timeout
        self.max_answer_bytes = max_answer_bytes
        self._api: Any = None
        self._engine: EngineInfo | None = None
        self._engine_read_at = 0.0
        self._in_flight: Any = None  # the connection of the request being made
        self._in_flight_lock = threading.Lock()
        self._info_refused = ""  # the last /info refusal, logged once
        self._tracked: list[Any] = []  # adapters and pools whose methods we wrapped

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
            for adapter in api.adapters.values():
                self._track_connections(adapter)
            self._api = api
        return self._api

    def _track_connections(self, adapter: Any) -> None:
        """Note which connection each request uses, so the watchdog can cut it.

        A socket timeout bounds each read, not the request: an engine sending a byte a
        second never trips it. The watchdog shuts the connection down at the deadline.
        """
        get_pool = adapter.get_connection_with_tls_context
        client = self

        def tracked_pool(*args: Any, **kwargs: Any) -> Any:
            pool = get_pool(*args, **kwargs)
            if not getattr(pool, "_exporter_tracked", False):
                get_conn = pool._get_conn

                def tracked_get_conn(*a: Any, **kw: Any) -> Any:
                    conn = get_conn(*a, **kw)
                    with client._in_flight_lock:
                        client._in_flight = conn
                    return conn

                pool._get_conn = tracked_get_conn
                pool._exporter_tracked = True
                client._tracked.append(pool)
            return pool

        adapter.get_connection_with_tls_context = tracked_pool
        self._tracked.append(adapter)

    def _cut(self, fired: threading.Event) -> None:
        with self._in_flight_lock:
            fired.set()
            sock = getattr(self._in_flight, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connections, and undo the wrapping: its closures refer back to their
        adapter and pool, cycles that only a full GC would free (with their sockets)."""
        if self._api is not None:
            try:
                self._api.close()
            finally:
                self._api = None
                self._engine = None
                tracked, self._tracked = self._tracked, []
                for obj in tracked:
                    for name in ("get_connection_with_tls_context", "_get_conn"):
                        obj.__dict__.pop(name, None)
                with self._in_flight_lock:
                    self._in_flight = None

    def _get(
        self,
        path: str,
        params: dict[str, Any] | None,
        timeout: float,
        decode: Callable[[bytearray], T] = json.loads,
        stated_timeout: float | None = None,
        incremental: Callable[[], Incremental[T]] | None = None,
    ) -> T:
        """One request, cut at ``timeout``; ``stated_timeout``: the one errors name, when
        this request is a retry with what is left of it; ``incremental``: a decoder that
        reads a successful answer as it comes, instead of ``decode`` on the whole of it."""
        stated = timeout if stated_timeout is None else stated_timeout
        api = self._session()
        if path not in ENDPOINTS and not _INSPECT.fullmatch(path):
            raise ValueError(f"{path} is not one of the engine endpoints {ENDPOINTS}")
        version = self._engine.api_version if self._engine and path != VERSION else ""
        url = f"{api.base_url}{'/v' + version if version else ''}{path}"
        where = f"GET {path}"
        fired = threading.Event()
        watchdog = threading.Timer(timeout, self._cut, (fired,))
        watchdog.daemon = True
        with self._in_flight_lock:
            self._in_flight = None
        watchdog.start()
        try:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    # The Engine API never redirects: following one would send the client
                    # certificate, or report a foreign engine's data, from elsewhere.
                    response = api.get(
                        url, params=params, timeout=timeout, stream=True, allow_redirects=False
                    )
                with response:
                    status = response.status_code
                    if 300 <= status < 400:
                        target = response.headers.get("Location", "")
                        raise EngineError(
                            f"{where}: the engine answered a redirect (HTTP {status}), which "
                            "the Engine API never does; not followed",
                            f"to {quoted(target)}" if target else "",
                        )
                    sink = incremental() if incremental is not None and status < 300 else None
                    body = self._read(response, where, fired, sink)
                if status >= 400:
                    raise EngineError(
                        f"{where}: engine answered HTTP {status}", _error_message(body)
                    ) from requests.exceptions.HTTPError(status, response=response)
                try:
                    return sink.end() if sink is not None else decode(body)
                except EngineDataError:
                    raise  # valid JSON of the wrong shape: the decoder's own one-line message
                except (ValueError, RecursionError) as exc:
                    raise EngineError(f"{where}: the engine's answer is not valid JSON") from exc
            except Exception as exc:
                if fired.is_set():
                    raise _Deadline() from exc
                raise
        except _Deadline as exc:
            self.close()
            raise EngineError(f"{where}: no answer within {stated:g}s") from exc.__cause__
        except EngineError:
            self.close()
            raise
        except EngineDataError:
            raise
        except Exception as exc:
            self.close()
            tls = self.config.tls
            sent_cert = tls is not None and tls.cert is not None
            raise EngineError(describe(exc, where, stated, sent_cert, self.config.host)) from exc
        finally:
            watchdog.cancel()

    def _read(
        self,
        response: Any,
        where: str,
        fired: threading.Event,
        sink: Incremental[Any] | None = None,
    ) -> bytearray:
        """The decoded body, at most ``max_answer_bytes`` (compressed or not); with a
        ``sink``, fed to it as it comes instead (and the body returned is empty)."""
        limit = self.max_answer_bytes
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise self._too_big(where)
        # One buffer that grows in place: a list of chunks and their join would hold the
        # answer twice (13 MB each for 10k containers).
        body = bytearray()
        read = 0
        try:
            # urllib3 (2.6+) decodes at most the amount asked for per read, so a gzip bomb
            # is stopped at the cap rather than expanded in memory.
            for chunk in response.raw.stream(READ_CHUNK, decode_content=True):
                read += len(chunk)
                if read > limit:
                    raise self._too_big(where)
                if sink is not None:
                    sink.feed(chunk)
                else:
                    body += chunk
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if fired.is_set():
                raise _Deadline() from exc
            raise EngineError(f"{where}: the engine closed the connection mid-answer") from exc
        return body

    def _too_big(self, where: str) -> EngineError:
        return EngineError(
            f"{where}: the answer is larger than {self.max_answer_bytes} bytes "
            "(--collect.max-answer-size); not read"
        )

    def engine(self) -> EngineInfo:
        """The engine's identity, API version, data root and storage driver, cached for
        VERSION_TTL: /version and /info are read together, on connect and hourly."""
        now = time.monotonic()
        if self._engine is None or now - self._engine_read_at > VERSION_TTL:
            version = parse_version(self._get(VERSION, None, self.identity_timeout))
            self._engine = version  # /info below is asked in the engine's API version
            manager = False
            try:
                info: Any = self._get(INFO, None, self.identity_timeout)
                data_root, driver = parse_info(info)
                manager = swarm_manager(info)
            except EngineError as exc:
                if not isinstance(exc.__cause__, requests.exceptions.HTTPError):
                    raise
                # An HTTP refusal (a socket proxy that does not allow /info) costs only
                # the data root: the inventory goes on without it.
                if str(exc) != self._info_refused:
                    log.warning("%s; the data root and storage driver are unknown", exc)
                    self._info_refused = str(exc)
                data_root, driver = "", ""
            self._engine = replace(
                version, data_root=data_root, storage_driver=driver, swarm_manager=manager
            )
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
        incremental: Callable[[], Incremental[T]] | None = None,
        ids: Collection[str] = (),
    ) -> T:
        """/containers/json?all=1, decoded by ``decode`` from the answer's bytes, or by
        ``incremental`` while it is read; only the containers ``ids`` names when given."""
        self.engine()
        params = {"all": "1", "size": "1"} if size else {"all": "1"}
        if ids:
            params["filters"] = json.dumps({"id": sorted(ids)}, separators=(",", ":"))
        return self._get(
            CONTAINERS, params, timeout or self.timeout, decode, incremental=incremental
        )

    def services(self) -> Any:
        """/services, with each service's task counts (ServiceStatus) from API 1.41."""
        params = {"status": "true"} if self.api_at_least("1.41") else None
        return self._get(SERVICES, params, self.timeout)

    def tasks(self) -> Any:
        """/tasks: every task the swarm holds (task history included)."""
        self.engine()
        return self._get(TASKS, None, self.timeout)

    def disk_usage(self, types: tuple[str, ...] | None, timeout: float) -> Any:
        """/system/df; ``types`` (API 1.42+) limits it to those object types.

        Engines without moby's shared df (before Docker 23) refuse a second /system/df while
        one runs, such as a user's ``docker system df`` or another exporter's: that answer
        is retried, with growing pauses, until ``timeout`` is spent, rather than failing
        the run and dropping the disk series until the next one.
        """
        # /version and /info (on connect and hourly) are not part of the df's own time
        params = {"type": list(types)} if types and self.api_at_least("1.42") else None
        deadline = time.monotonic() + timeout
        pause = DF_BUSY_FIRST_PAUSE
        left = timeout
        while True:
            try:
                return self._get(SYSTEM_DF, params, left, stated_timeout=timeout)
            except EngineError as err:
                if DF_BUSY not in err.detail or deadline - time.monotonic() <= pause:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, DF_BUSY_LONGEST_PAUSE)
            left = max(deadline - time.monotonic(), 0.001)

    def registry_config(self) -> Any:
        """/info, for its RegistryConfig (the registry job reads it each run)."""
        self.engine()
        return self._get(INFO, None, self.timeout)

    def container_image_ref(self, container_id: str) -> str:
        """The reference a container was created from (inspect's Config.Image)."""
        self.engine()
        data: Any = self._get(f"/containers/{container_id}/json", None, self.timeout)
        config = data.get("Config") if isinstance(data, dict) else None
        image = config.get("Image") if isinstance(config, dict) else None
        if not isinstance(image, str):
            raise EngineDataError(f"inspect of container {container_id[:12]} has no Config.Image")
        return image
