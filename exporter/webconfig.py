"""``--web.config.file``: TLS, client certificates, basic auth and response headers, in
exporter-toolkit's ``web-config.yml`` format (the keys and meaning the Go exporters use).

The file is read once at start; every problem is a ``ConfigError`` of one sentence. The
certificate, key and client CA files are re-read when they change on disk (see
``TLSReloader``), so a renewal needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from .config import ConfigError
from .configtext import ECHO_CHARS, TextProblem, parse_yaml, read_text, shorten

# Go's crypto/tls names of the TLS 1.2 suites, and OpenSSL's. TLS 1.3 suites are fixed in Go
# and cannot be chosen in Python's ssl either, so cipher_suites applies to TLS 1.2 in both.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# RequestClientCert asks for a certificate and lets any client in, with or without one: the
# same access as NoClientCert. RequireAnyClientCert wants a certificate it does not verify,
# which Python's ssl cannot do (it has no verify callback), so it is refused.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH = {"RequireAnyClientCert"}
# exporter-toolkit's list: only these headers, and for two of them only these values.
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
# keys of exporter-toolkit that this exporter does not implement: refused, never ignored
TLS_KEYS_UNSUPPORTED = {"cert", "key", "client_ca", "curve_preferences", "client_allowed_sans"}
AUTH_CACHE_SIZE = 1024  # checked credentials remembered, successes and failures each


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_auth: str = "NoClientCert"
    client_ca_file: str | None = None
    cipher_suites: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str | None = None
    prefer_server_cipher_suites: bool = True

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth == "RequireAndVerifyClientCert"

    def context(self) -> ssl.SSLContext:
        """A server context from the files as they are now; ConfigError when unusable."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        if self.cipher_suites:
            try:
                ctx.set_ciphers(":".join(CIPHER_SUITES[c] for c in self.cipher_suites))
            except ssl.SSLError:
                raise ConfigError(
                    "tls_server_config.cipher_suites: OpenSSL here offers none of them"
                ) from None
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.verify_mode = CLIENT_AUTH[self.client_auth]
        if self.client_ca_file:
            _readable(self.client_ca_file, "client_ca_file")
            try:
                ctx.load_verify_locations(self.client_ca_file)
            except ssl.SSLError:
                raise ConfigError(
                    f"client_ca_file {self.client_ca_file} holds no PEM certificate"
                ) from None
        _readable(self.cert_file, "cert_file")
        _readable(self.key_file, "key_file")
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_pass_phrase)
        except _EncryptedKey:
            raise ConfigError(
                f"key_file {self.key_file} is encrypted; give it unencrypted"
            ) from None
        except ssl.SSLError:
            raise ConfigError(
                f"cert_file {self.cert_file} and key_file {self.key_file} are not a matching "
                "PEM certificate and key"
            ) from None
        return ctx

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


class _EncryptedKey(Exception):
    pass


def _no_pass_phrase() -> bytes:
    raise _EncryptedKey()


MAX_PEM_BYTES = 1024 * 1024  # a certificate chain or a key; a bigger file is refused


def _readable(path: str, what: str) -> None:
    """A regular file under ``MAX_PEM_BYTES`` (OpenSSL would parse a 1 GB key for 20 s)."""
    try:
        read_text(path, MAX_PEM_BYTES)
    except TextProblem as exc:
        problem = str(exc)
        if problem.startswith("cannot read: "):
            raise ConfigError(f"cannot read {what} {path}: {problem[13:]}") from None
        raise ConfigError(f"{what} {path} {problem}") from None


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _unknown(section: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in section:
        if key not in known:
            raise ConfigError(f"{where} has unknown key '{key}'")


def parse_web_config(text: str, path: str = "--web.config.file") -> WebConfig:
    """The web config's YAML text to a WebConfig; ConfigError naming the file and the
    first problem."""
    try:
        return _parse_web_config(text, path)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(path):
            raise
        raise ConfigError(f"{path}: {shorten(message, 4 * ECHO_CHARS)}") from None


def _parse_web_config(text: str, path: str) -> WebConfig:
    try:
        data = parse_yaml(text)
    except TextProblem as exc:
        raise ConfigError(f"{path}: {exc}") from None
    top = _mapping(data, path)
    _unknown(top, {"tls_server_config", "basic_auth_users", "http_server_config"}, path)
    return WebConfig(
        tls=_tls(_mapping(top.get("tls_server_config"), "tls_server_config")),
        users=_users(_mapping(top.get("basic_auth_users"), "basic_auth_users")),
        headers=_headers(_mapping(top.get("http_server_config"), "http_server_config")),
    )


def _tls(raw: dict[str, Any]) -> TLSServerConfig | None:
    if not raw:
        return None
    for name in raw:
        if name in TLS_KEYS_UNSUPPORTED:
            raise ConfigError(f"tls_server_config.{name} is not supported by this exporter")
    _unknown(raw, TLS_KEYS, "tls_server_config")
    cert, key = raw.get("cert_file"), raw.get("key_file")
    if not cert or not key:
        raise ConfigError("tls_server_config needs both cert_file and key_file")
    auth = str(raw.get("client_auth_type") or "NoClientCert")
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise ConfigError(
            f"client_auth_type {auth} (a certificate that is not verified) cannot be done "
            "with Python's ssl; use RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH:
        names = ", ".join([*CLIENT_AUTH, *UNSUPPORTED_CLIENT_AUTH])
        raise ConfigError(f"client_auth_type '{auth}' is not one of {names}")
    ca = raw.get("client_ca_file")
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not ca:
        raise ConfigError(f"client_auth_type {auth} needs client_ca_file")
    if ca and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise ConfigError("client_ca_file is set but client_auth_type does not verify clients")
    suites = raw.get("cipher_suites") or []
    if not isinstance(suites, list):
        raise ConfigError("tls_server_config.cipher_suites must be a list")
    for suite in suites:
        if suite not in CIPHER_SUITES:
            raise ConfigError(f"cipher suite '{suite}' is not one this exporter can offer")
    versions: dict[str, str | None] = {}
    for name, default in (("min_version", "TLS12"), ("max_version", None)):
        version = raw.get(name, default)
        if version is not None and version not in TLS_VERSIONS:
            raise ConfigError(f"{name} '{version}' is not one of {', '.join(TLS_VERSIONS)}")
        versions[name] = version
    low, high = versions["min_version"], versions["max_version"]
    if low and high and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise ConfigError(f"min_version {low} is above max_version {high}")
    config = TLSServerConfig(
        cert_file=str(cert),
        key_file=str(key),
        client_auth=auth,
        client_ca_file=str(ca) if ca else None,
        cipher_suites=tuple(str(s) for s in suites),
        min_version=str(low),
        max_version=str(high) if high else None,
        prefer_server_cipher_suites=bool(raw.get("prefer_server_cipher_suites", True)),
    )
    config.context()  # every file readable and usable now, or one line and exit 2
    return config


def _users(raw: dict[str, Any]) -> dict[str, bytes]:
    users = {}
    for user, hashed in raw.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"basic_auth_users.{user} is not a bcrypt hash")
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise ConfigError(f"basic_auth_users.{user} is not a valid bcrypt hash") from None
        users[str(user)] = hashed.encode()
    return users


def _headers(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    _unknown(raw, {"headers", "http2"}, "http_server_config")
    headers = _mapping(raw.get("headers"), "http_server_config.headers")
    out = []
    for name, value in headers.items():
        canonical = next((h for h in HEADERS if h.lower() == str(name).lower()), None)
        if canonical is None:
            raise ConfigError(f"HTTP header '{name}' can not be configured")
        allowed = HEADERS[canonical]
        if allowed is not None and str(value).lower() not in allowed:
            raise ConfigError(f"HTTP header '{name}' can only be {' or '.join(allowed)}")
        out.append((canonical, str(value)))
    return tuple(out)


def load_web_config(path: str) -> WebConfig:
    try:
        text = read_text(path)
    except TextProblem as exc:
        raise ConfigError(f"--web.config.file {path}: {exc}") from None
    return parse_web_config(text, path)


class TLSReloader:
    """Serves the newest certificate: new handshakes see files replaced on disk.

    The listening context's SNI callback, called on every handshake, only hands out the
    current context: it never builds one. When the files' size, inode or time changed
    (looked at most once a second), a context is built from them in a thread of its own,
    and swapped in when it works. A failed build keeps the previous context, is logged
    once, and is tried again after a back-off that doubles up to ``MAX_BACKOFF``.
    """

    CHECK_EVERY = 1.0
    FIRST_BACKOFF = 5.0
    MAX_BACKOFF = 300.0

    def __init__(self, config: TLSServerConfig, log: Any) -> None:
        self.config = config
        self.log = log
        self._lock = threading.Lock()
        self._current = config.context()
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self._last_error: str | None = None
        self._building = False
        self._retry_at = 0.0
        self._backoff = self.FIRST_BACKOFF
        self.listening = config.context()
        self.listening.sni_callback = self._on_handshake
        self.reloads = 0
        self.attempts = 0  # contexts built (or tried) after the first

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in self.config.files():
            try:
                st = os.stat(path)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def current(self) -> ssl.SSLContext:
        now = time.monotonic()
        with self._lock:
            if (
                not self._building
                and now - self._checked >= self.CHECK_EVERY
                and now >= self._retry_at
            ):
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._building = True
                    self.attempts += 1
                    threading.Thread(
                        target=self._rebuild, args=(stamp,), name="tls-reload", daemon=True
                    ).start()
            return self._current

    def _rebuild(self, stamp: tuple[tuple[int, int, int], ...]) -> None:
        """In its own thread: the new context, or the old one kept and a back-off."""
        try:
            context = self.config.context()
        except ConfigError as exc:
            with self._lock:
                self._building = False
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self.MAX_BACKOFF)
                repeated = str(exc) == self._last_error
                self._last_error = str(exc)
            if not repeated:
                self.log.error("TLS reload failed, keeping the previous: %s", exc)
            return
        with self._lock:
            self._current = context
            self._stamp = stamp
            self._building = False
            self._last_error = None
            self._backoff = self.FIRST_BACKOFF
            self.reloads += 1
        self.log.info("TLS certificate files changed: reloaded")

    def retry_now(self) -> None:
        """End a back-off: the next handshake looks at the files again."""
        with self._lock:
            self._retry_at = 0.0
            self._checked = 0.0

    def _on_handshake(
        self, sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: Any
    ) -> None:
        sock.context = self.current()


BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt 5 raises beyond, and exporter-toolkit refuses them


def bcrypt_cost(hashed: bytes) -> int:
    """The cost (log2 of the rounds) of a ``$2b$12$...`` hash."""
    return int(hashed.split(b"$")[2])


@dataclass(frozen=True)
class PendingCheck:
    """Credentials that neither cache knows: they need a bcrypt check (``BasicAuth.verify``)."""

    user: str
    password: bytes
    tag: bytes


class BasicAuth:
    """bcrypt basic auth with caches of checked credentials.

    bcrypt costs tens of milliseconds on purpose; a scrape every 15 s must not pay that, and
    strangers repeating a wrong password must not make the exporter pay it again and again.
    A checked (user, password) is remembered as an HMAC under a key made at start, so the
    caches hold no password and a lookup reveals nothing about stored entries: successes
    in one cache, failures in another, each bounded. ``precheck`` answers from the caches
    (cheap: it runs on the event loop); only what it cannot answer goes to ``verify``, which
    the server runs in its own small pool under its own budget, apart from the scrapes.

    An unknown user costs a bcrypt check of the same cost as the configured hashes, so
    timing does not tell which users exist. A password longer than bcrypt's 72 bytes is
    refused, as exporter-toolkit does.
    """

    def __init__(self, users: Mapping[str, bytes], cache_size: int = AUTH_CACHE_SIZE) -> None:
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        costs = [bcrypt_cost(h) for h in self.users.values()]
        # the cost most users have (the highest of those tied): what a known user costs
        self.dummy_cost = max(costs, key=lambda c: (costs.count(c), c)) if costs else 10
        self._dummy = bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=self.dummy_cost))
        self.bcrypt_checks = 0

    def precheck(self, authorization: str | None) -> bool | PendingCheck:
        """True or False when the header or a cache decides, else the check still to do."""
        if not self.users:
            return True
        if not authorization or authorization[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user_bytes, sep, password = decoded.partition(b":")
        if not sep or len(password) > BCRYPT_MAX_PASSWORD:
            return False
        tag = hmac.new(self._key, user_bytes + b"\0" + password, hashlib.sha256).digest()
        with self._lock:
            if tag in self._ok:
                self._ok.move_to_end(tag)
                return True
            if tag in self._failed:
                self._failed.move_to_end(tag)
                return False
        return PendingCheck(user_bytes.decode("utf-8", "replace"), password, tag)

    def verify(self, pending: PendingCheck) -> bool:
        """The bcrypt check (slow on purpose), its result remembered."""
        hashed = self.users.get(pending.user)
        self.bcrypt_checks += 1
        try:
            # bcrypt.checkpw compares the hashes in constant time
            good = bcrypt.checkpw(pending.password, hashed or self._dummy) and hashed is not None
        except ValueError:  # a hash or a password bcrypt refuses: no entry
            good = False
        with self._lock:
            cache = self._ok if good else self._failed
            cache[pending.tag] = None
            while len(cache) > self._cache_size:
                cache.popitem(last=False)
        return good

    def check(self, authorization: str | None) -> bool:
        """``precheck`` and, when needed, ``verify``, in the calling thread."""
        verdict = self.precheck(authorization)
        return verdict if isinstance(verdict, bool) else self.verify(verdict)
