"""Configuration: flags and DOCKER_* variables resolved into one validated value.

Every problem becomes a ``ConfigError`` whose message is one sentence; the CLI prints it
and exits 2. Nothing here talks to the engine.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .metrics import DISK_RESOURCES

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_PORT = 9487
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


class ConfigError(ValueError):
    """Bad configuration; the message is one sentence for the user."""


@dataclass(frozen=True)
class TLSSettings:
    ca: str | None
    cert: str | None
    key: str | None
    verify: bool


@dataclass(frozen=True)
class EngineConfig:
    host: str  # unix:///path or tcp://host:port
    tls: TLSSettings | None = None

    @property
    def display(self) -> str:
        scheme = "tcp+tls" if self.tls else ""
        return self.host.replace("tcp://", f"{scheme}://", 1) if scheme else self.host


@dataclass(frozen=True)
class JobSchedule:
    interval: float  # seconds; 0 turns the job off
    timeout: float


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    engine: EngineConfig
    inventory: JobSchedule
    disk_usage: JobSchedule
    container_sizes: JobSchedule
    disk_usage_resources: tuple[str, ...] = DISK_RESOURCES
    per_image: bool = True
    per_container: bool = True
    container_labels: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    healthcheck: bool = False

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label_name(k) for k in self.container_labels)


def parse_duration(text: str, what: str, allow_zero: bool = False) -> float:
    """'15s', '5m', '1h', '500ms' or plain seconds."""
    match = _DURATION_RE.match(text.strip())
    if not match:
        raise ConfigError(f"{what} '{text}' is not a duration like 15s, 5m or 1h")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds == 0 and not allow_zero:
        raise ConfigError(f"{what} must be longer than 0")
    return seconds


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--web.listen-address '{text}' is not HOST:PORT or :PORT")
    host = host.strip("[]")
    return host, int(port)


def label_name(key: str) -> str:
    """A container label key as a Prometheus label name: label_<key with [^a-zA-Z0-9_] -> _>."""
    return "label_" + _LABEL_NAME_RE.sub("_", key)


def parse_label_keys(text: str) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    seen: dict[str, str] = {}
    for key in keys:
        name = label_name(key)
        if name in seen:
            raise ConfigError(
                f"--collect.container-labels keys '{seen[name]}' and '{key}' both become {name}"
            )
        seen[name] = key
    return keys


def parse_resources(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    for item in items:
        if item not in DISK_RESOURCES:
            raise ConfigError(
                f"--collect.disk-usage-resources has unknown '{item}';"
                f" choose from {', '.join(DISK_RESOURCES)}"
            )
    if not items:
        raise ConfigError("--collect.disk-usage-resources needs at least one resource")
    return items


def parse_host(host: str, source: str, tls: bool) -> str:
    """Validate a DOCKER_HOST-style address and return it in canonical form."""
    parts = urlsplit(host)
    if parts.scheme == "unix":
        path = parts.netloc + parts.path
        if not path.startswith("/"):
            raise ConfigError(f"{source} '{host}' needs an absolute socket path, as unix:///path")
        return f"unix://{path}"
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{source} '{host}' has an invalid port") from None
        if not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(f"{source} '{host}' is not tcp://HOST:PORT")
        hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"tcp://{hostname}:{port or (2376 if tls else 2375)}"
    raise ConfigError(f"{source} '{host}' is not a unix:// or tcp:// address")


def _readable(path: str, what: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return path


def resolve_engine(
    env: Mapping[str, str],
    host: str | None = None,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify: bool | None = None,
) -> tuple[EngineConfig, tuple[str, ...]]:
    """Flags win over DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH.

    As in the docker CLI: DOCKER_TLS_VERIFY set to any non-empty value turns TLS with
    verification on, DOCKER_TLS turns TLS on without verification, and DOCKER_CERT_PATH
    (default ~/.docker) holds ca.pem, cert.pem and key.pem. A CA given by flag means
    verification unless --no-docker.tls-verify says otherwise.
    """
    env_verify = bool(env.get("DOCKER_TLS_VERIFY"))
    env_tls = bool(env.get("DOCKER_TLS"))
    flags_tls = any(v is not None for v in (ca, cert, key)) or verify is not None
    tls_on = env_verify or env_tls or flags_tls
    source = "--docker.host" if host else "DOCKER_HOST"
    raw_host = host or env.get("DOCKER_HOST") or DEFAULT_HOST
    canonical = parse_host(raw_host, source, tls_on)
    if canonical.startswith("unix://"):
        if flags_tls:
            raise ConfigError(f"TLS flags need a tcp:// engine address, not {canonical}")
        return EngineConfig(canonical), ()  # the CLI ignores DOCKER_TLS* for sockets too
    if not tls_on:
        return EngineConfig(canonical), ()

    cert_path = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    if verify is None:
        verify = env_verify or ca is not None

    def default(name: str, given: str | None) -> str | None:
        if given is not None:
            return given
        candidate = cert_path / name
        # DOCKER_TLS_VERIFY requires the files; plain DOCKER_TLS uses them when present.
        return str(candidate) if env_verify or candidate.exists() else None

    ca_file = default("ca.pem", ca) if verify else ca
    cert_file = default("cert.pem", cert)
    key_file = default("key.pem", key)
    if (cert_file is None) != (key_file is None):
        raise ConfigError(
            "a client certificate needs its key: give both --docker.tls-cert and --docker.tls-key"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        _readable(ca_file, "the engine CA file")
        try:
            context.load_verify_locations(ca_file)
        except ssl.SSLError:
            raise ConfigError(f"the engine CA file {ca_file} holds no PEM certificate") from None
    if cert_file and key_file:
        _readable(cert_file, "the client certificate")
        _readable(key_file, "the client key")
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError:
            raise ConfigError(
                f"the client certificate {cert_file} and key {key_file} are not a matching PEM pair"
            ) from None
    warnings: tuple[str, ...] = ()
    if not verify:
        warnings = (
            "TLS without server verification: the engine's identity is not checked"
            " (use only for hosts whose certificate does not name the address you use)",
        )
    return EngineConfig(canonical, TLSSettings(ca_file, cert_file, key_file, verify)), warnings
