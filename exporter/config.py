"""Configuration: flags and DOCKER_* variables resolved into one validated value.

Every problem becomes a ``ConfigError`` whose message is one sentence; the CLI prints it
and exits 2. Nothing here talks to the engine.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import durations
from .filesystem import AUTO
from .metrics import CONTAINER_SIZES, DISK_RESOURCES, DISK_USAGE, INVENTORY, REGISTRY, SWARM
from .thresholds import THRESHOLDS, parse_threshold

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_LABELS = "com.docker.compose.project,com.docker.compose.service"
DEFAULT_PORT = 9487
# A collection more often than this only loads the engine; a 1ms interval ran at 97% CPU.
MIN_INTERVAL = 1.0
# Far beyond any useful schedule, and well inside what timers and datetimes can hold.
MAX_DURATION = 7 * 86400.0
_LABEL_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


class ConfigError(ValueError):
    """Bad configuration; the message is one sentence for the user.

    ``field`` names the setting at fault where the message does not (the config file
    loader puts it in front of the message).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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

    @property
    def enabled(self) -> bool:
        return self.interval > 0


@dataclass(frozen=True)
class JobSetting:
    """One scheduled job's interval and timeout, as flags and as config-file keys.

    ``JOB_SETTINGS`` is the one table the flags, the file's keys and their validation
    are generated from.
    """

    job: str  # the job's name, as in metrics.JOBS
    flag_stem: str  # --collect.<stem>interval, --collect.<stem>timeout
    key_stem: str  # <stem>interval, <stem>timeout in the config file
    interval: str  # defaults
    timeout: str
    optional: bool  # an interval of 0 turns the job off
    what: str  # for the help texts

    @property
    def interval_flag(self) -> str:
        return f"--collect.{self.flag_stem}interval"

    @property
    def timeout_flag(self) -> str:
        return f"--collect.{self.flag_stem}timeout"

    @property
    def interval_key(self) -> str:
        return f"{self.key_stem}interval"

    @property
    def timeout_key(self) -> str:
        return f"{self.key_stem}timeout"


JOB_SETTINGS = (
    JobSetting(INVENTORY, "", "collect_", "15s", "5s", False, "inventory (images and containers)"),
    JobSetting(DISK_USAGE, "disk-usage-", "disk_usage_", "5m", "2m", True, "/system/df"),
    JobSetting(
        CONTAINER_SIZES,
        "container-sizes-",
        "container_sizes_",
        "0",
        "2m",
        True,
        "container size (/containers/json?size=1, costly)",
    ),
    JobSetting(
        SWARM,
        "swarm-",
        "swarm_",
        "15s",
        "5s",
        True,
        "Swarm services (/services and /tasks, asked of Swarm managers only)",
    ),
    JobSetting(
        REGISTRY,
        "registry-",
        "registry_",
        "0",
        "10s",
        True,
        "registry (HEAD requests to the images' registries)",
    ),
)


@dataclass(frozen=True)
class Flag:
    """One command-line flag. Its name is written here only; code reads values by the Flag."""

    name: str
    help: str
    default: object = None
    boolean: bool = False  # --x / --no-x
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace(".", "_").replace("-", "_")


LOG_LEVELS = ("debug", "info", "warn", "error")

LISTEN = Flag("--web.listen-address", "address to serve /metrics on", f":{DEFAULT_PORT}")
HOST = Flag(
    "--docker.host",
    f"engine address, unix:///path or tcp://host:port (default: $DOCKER_HOST or {DEFAULT_HOST})",
)
TLS_CA = Flag(
    "--docker.tls-ca",
    "CA file that signed the engine's certificate (default: $DOCKER_CERT_PATH/ca.pem when"
    " DOCKER_TLS_VERIFY is set)",
)
TLS_CERT = Flag("--docker.tls-cert", "client certificate file")
TLS_KEY = Flag("--docker.tls-key", "client key file")
TLS_VERIFY = Flag(
    "--docker.tls-verify",
    "verify the engine's certificate (default: on whenever a CA is known)",
    boolean=True,
)
JOB_FLAGS: dict[str, tuple[Flag, Flag]] = {
    s.job: (
        Flag(
            s.interval_flag,
            f"interval of the {s.what} job" + (" (0 turns it off)" if s.optional else ""),
            s.interval,
        ),
        Flag(s.timeout_flag, f"timeout of each request of the {s.what} job", s.timeout),
    )
    for s in JOB_SETTINGS
}
RESOURCES = Flag(
    "--collect.disk-usage-resources",
    "resources the disk_usage job asks for (API 1.42+ computes only these)",
    ",".join(DISK_RESOURCES),
)
PER_IMAGE = Flag(
    "--collect.per-image", "export per-image series (off leaves the totals)", True, boolean=True
)
PER_CONTAINER = Flag(
    "--collect.per-container",
    "export per-container series (off leaves the totals)",
    True,
    boolean=True,
)
PER_VOLUME = Flag(
    "--collect.per-volume",
    "export per-volume series (off leaves the dangling and per-project totals)",
    True,
    boolean=True,
)
LABELS = Flag(
    "--collect.container-labels",
    "comma-separated container label keys exported on docker_container_labels",
    DEFAULT_LABELS,
)
MAX_ANSWER = Flag(
    "--collect.max-answer-size",
    "largest engine answer read, after gzip decoding (about 1 KB per container)",
    "64MiB",
)
WORKERS = Flag(
    "--collect.workers",
    "threads that collect, shared by all targets: more than the engines that may hang at once",
    "8",
)
ON_SCRAPE = Flag(
    "--collect.on-scrape",
    "collect a target only while it is scraped: from its first scrape until it has gone"
    " unscraped for 3 collection intervals (for sharding by Prometheus hashmod)",
    False,
    boolean=True,
)
CONFIG_FILE = Flag(
    "--config.file",
    "YAML file of named targets and discovery sources; /metrics?target=NAME serves each",
    metavar="PATH",
)
WATCH_INTERVAL = Flag(
    "--config.watch-interval",
    "how often the config file and discovery sources are checked for changes (0: on SIGHUP only)",
    "5s",
)
HEALTHCHECK = Flag(
    "--healthcheck",
    "check /-/healthy of the exporter serving on --web.listen-address and exit 0 when healthy,"
    " 1 otherwise (for a container HEALTHCHECK without curl)",
    False,
)
LOG_LEVEL = Flag("--log.level", "log level", "info", choices=LOG_LEVELS)
LOG_FORMAT = Flag("--log.format", "log line format", "logfmt", choices=("logfmt", "json"))
WEB_CONFIG = Flag(
    "--web.config.file",
    "exporter-toolkit web config (YAML): TLS, client certificates, basic auth and response"
    " headers; read at start, certificates re-read when they change",
    metavar="PATH",
)
MAX_REQUESTS = Flag(
    "--web.max-requests",
    "requests answered by workers at the same time (a scrape of bytes already built needs"
    " none); more get 503 (0: unlimited)",
    "40",
)
TELEMETRY_PATH = Flag("--web.telemetry-path", "path of the metrics", "/metrics")
NO_EXPORTER_METRICS = Flag(
    "--web.disable-exporter-metrics",
    "leave out the exporter's own process_* metrics and docker_exporter_build_info (the"
    " collection metrics stay: alerts use them)",
    False,
)
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready", "/targets")
REGISTRY_ALL_TAGS = Flag(
    "--collect.registry-all-tags",
    "the registry job checks every local tag, not only those containers were created from",
    False,
    boolean=True,
)
REGISTRY_CERTS_DIR = Flag(
    "--collect.registry-certs-dir",
    "where registry CAs are read from, as HOST:PORT/ca.crt (the engine's certs.d)",
    "/etc/docker/certs.d",
    metavar="DIR",
)
DATA_ROOT_FS = Flag(
    "--collect.data-root-filesystem",
    "measure the filesystem holding the engine's data root: 'auto' (the data root /info names,"
    " when the engine is on a local unix socket and that path exists here), 'off', or the data"
    " root's path as mounted into the exporter",
    AUTO,
)
EVENTS = Flag(
    "--collect.events",
    "watch the engine's event stream (GET /events): restart, OOM kill and exit counters, and"
    " a collection within about a second of a change (off: the interval alone)",
    True,
    boolean=True,
)
THRESHOLD_FLAGS: dict[str, Flag] = {
    t.name: Flag(
        t.flag,
        f"{t.meaning} ({t.alerts}; unset: the rules' default, {t.default_text})",
        metavar="BYTES" if t.kind == "bytes" else t.kind.upper(),
    )
    for t in THRESHOLDS
}

FLAG_GROUPS: dict[str, tuple[Flag, ...]] = {
    "web": (LISTEN, WEB_CONFIG, MAX_REQUESTS, TELEMETRY_PATH, NO_EXPORTER_METRICS),
    "engine (one target; the defaults of every target with --config.file)": (
        HOST,
        TLS_CA,
        TLS_CERT,
        TLS_KEY,
        TLS_VERIFY,
    ),
    "collection": (
        *(flag for pair in JOB_FLAGS.values() for flag in pair),
        RESOURCES,
        PER_IMAGE,
        PER_CONTAINER,
        PER_VOLUME,
        LABELS,
        MAX_ANSWER,
        DATA_ROOT_FS,
        WORKERS,
        ON_SCRAPE,
    ),
    "event stream": (EVENTS,),
    "alert thresholds (this host's; exported as docker_exporter_alert_threshold)": tuple(
        THRESHOLD_FLAGS.values()
    ),
    "registry update check (see docs/registry.md)": (REGISTRY_ALL_TAGS, REGISTRY_CERTS_DIR),
    "fleet": (CONFIG_FILE, WATCH_INTERVAL),
    "operation": (HEALTHCHECK, LOG_LEVEL, LOG_FORMAT),
}


def job_schedule(
    setting: JobSetting,
    interval: str,
    timeout: str | None,
    names: tuple[str, str],
    default_timeout: float | None = None,
) -> JobSchedule:
    """The one validation of every job's interval and timeout; ``names`` name them in errors.

    A timeout given must not be longer than the interval; one not given is the default
    (``default_timeout`` or the table's), shortened to the interval where it is longer.
    """
    interval_name, timeout_name = names
    every = parse_interval(interval, interval_name, allow_zero=setting.optional)
    if timeout is None:
        limit = default_timeout
        if limit is None:
            limit = parse_duration(setting.timeout, timeout_name)
        return JobSchedule(every, min(limit, every) if every else limit)
    limit = parse_duration(timeout, timeout_name)
    if every and limit > every:
        raise ConfigError(
            f"{timeout_name} ({timeout}) must not be longer than {interval_name} ({interval})"
        )
    return JobSchedule(every, limit)


# The decoded size cap of one answer. Recorded engines send about 1 KB per container and
# 0.4 KB per image: 64 MiB holds some 60,000 containers, beyond the biggest CI hosts reported.
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Schedules:
    """Each job's schedule; the fields are named like the jobs in ``JOB_SETTINGS``."""

    inventory: JobSchedule
    disk_usage: JobSchedule
    container_sizes: JobSchedule
    swarm: JobSchedule
    registry: JobSchedule = JobSchedule(0.0, 10.0)  # off unless asked


@dataclass(frozen=True)
class TargetSettings:
    """What may be set per target (in the config file) or once (by flags)."""

    schedules: Schedules
    disk_usage_resources: tuple[str, ...] = DISK_RESOURCES
    per_image: bool = True
    per_container: bool = True
    container_labels: tuple[str, ...] = tuple(DEFAULT_LABELS.split(","))
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    data_root_filesystem: str = AUTO  # auto, off, or the data root's path as seen here
    alert_thresholds: tuple[tuple[str, float], ...] = ()  # (threshold name, value) set
    per_volume: bool = True
    registry_all_tags: bool = False  # the registry job checks every local tag
    events: bool = True  # watch the engine's event stream

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label_name(k) for k in self.container_labels)


@dataclass(frozen=True)
class TargetConfig:
    name: str
    engine: EngineConfig
    settings: TargetSettings


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    log_level: str
    target: TargetConfig  # from the flags and DOCKER_*; the fleet's defaults with --config.file
    config_file: str | None = None
    workers: int = 8
    collect_on_scrape: bool = False
    watch_interval: float = 5.0  # how often watched files are checked (0: only on SIGHUP)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    healthcheck: bool = False
    web_config_file: str | None = None
    max_requests: int = 40
    telemetry_path: str = "/metrics"
    exporter_metrics: bool = True
    log_format: str = "logfmt"
    registry_certs_dir: str = "/etc/docker/certs.d"


def parse_duration(text: str, what: str, allow_zero: bool = False, minimum: float = 0.0) -> float:
    """A Prometheus duration ('15s', '1h30m', '2d', '500ms') within sane bounds."""
    if text.strip().startswith("-"):
        raise ConfigError(f"{what} '{text}' is negative; give a duration like 15s or 1h30m")
    seconds = durations.parse_duration(text)
    if seconds is None:
        raise ConfigError(f"{what} '{text}' is not a duration like 15s, 1h30m, 2d or 500ms")
    if seconds == 0:
        if allow_zero:
            return 0.0
        raise ConfigError(f"{what} must be longer than 0")
    if seconds < minimum:
        raise ConfigError(f"{what} '{text}' is shorter than {durations.format_duration(minimum)}")
    if seconds > MAX_DURATION:
        raise ConfigError(f"{what} '{text}' is longer than the maximum of 1w")
    return seconds


def parse_interval(text: str, what: str, allow_zero: bool = False) -> float:
    return parse_duration(text, what, allow_zero, minimum=MIN_INTERVAL)


def parse_size(text: str, what: str) -> int:
    size = durations.parse_size(text)
    if size is None or size <= 0:
        raise ConfigError(f"{what} '{text}' is not a size like 64MiB or 100MB")
    return size


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{LISTEN.name} '{text}' is not HOST:PORT or :PORT")
    host = host.strip("[]")
    return host, int(port)


def label_name(key: str) -> str:
    """A container label key as a Prometheus label name: label_<key with [^a-zA-Z0-9_] -> _>."""
    return "label_" + _LABEL_NAME_RE.sub("_", key)


def _items(value: str | Sequence[str]) -> tuple[str, ...]:
    """A comma-separated flag value or a list from the config file, stripped and deduplicated."""
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def parse_label_keys(value: str | Sequence[str], what: str = LABELS.name) -> tuple[str, ...]:
    keys = _items(value)
    seen: dict[str, str] = {}
    for key in keys:
        name = label_name(key)
        if name in seen:
            raise ConfigError(f"{what} keys '{seen[name]}' and '{key}' both become {name}")
        seen[name] = key
    return keys


def parse_resources(value: str | Sequence[str], what: str = RESOURCES.name) -> tuple[str, ...]:
    items = _items(value)
    for item in items:
        if item not in DISK_RESOURCES:
            raise ConfigError(
                f"{what} has unknown '{item}'; choose from {', '.join(DISK_RESOURCES)}"
            )
    if not items:
        raise ConfigError(f"{what} needs at least one resource")
    return items


def parse_host(host: str, source: str, tls: bool) -> str:
    """Validate a DOCKER_HOST-style address and return it in canonical form."""
    shown = host if len(host) <= 120 else host[:117] + "..."
    try:
        parts = urlsplit(host)
    except ValueError as exc:  # such as an unbalanced [ in the host
        raise ConfigError(f"{source} '{shown}' is not a valid address: {exc}") from None
    if parts.scheme in ("unix", "tcp"):
        if parts.query or parts.fragment or "?" in host or "#" in host:
            raise ConfigError(f"{source} '{shown}' has a query or fragment, which would be dropped")
        if "@" in parts.netloc:
            raise ConfigError(
                f"{source} '{shown}' carries user info, which would be dropped"
                " (the Engine API takes no credentials in its address)"
            )
    if parts.scheme == "unix":
        path = parts.netloc + parts.path
        if not path.startswith("/"):
            raise ConfigError(f"{source} '{shown}' needs an absolute socket path, as unix:///path")
        return f"unix://{path}"
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{source} '{shown}' has an invalid port") from None
        if not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(f"{source} '{shown}' is not tcp://HOST:PORT")
        hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"tcp://{hostname}:{port or (2376 if tls else 2375)}"
    raise ConfigError(f"{source} '{shown}' is not a unix:// or tcp:// address")


class _EncryptedKey(Exception):
    pass


def _no_pass_phrase() -> bytes:
    raise _EncryptedKey()


def _readable(path: str, what: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return path


def check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """Each file readable and PEM, the certificate and key a pair; ConfigError with its field."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        try:
            _readable(ca, "the engine CA file")
            context.load_verify_locations(ca)
        except ConfigError as exc:
            raise ConfigError(str(exc), "ca") from None
        except ssl.SSLError:
            raise ConfigError(f"the engine CA file {ca} holds no PEM certificate", "ca") from None
    if cert and key:
        for path, what, name in (
            (cert, "the client certificate", "cert"),
            (key, "the client key", "key"),
        ):
            try:
                _readable(path, what)
            except ConfigError as exc:
                raise ConfigError(str(exc), name) from None
        try:
            # Without a password callback OpenSSL would prompt on the terminal.
            context.load_cert_chain(cert, key, password=_no_pass_phrase)
        except _EncryptedKey:
            raise ConfigError(
                f"the client key {key} is encrypted; give it without a pass phrase "
                "(openssl pkey -in KEY -out PLAIN_KEY)",
                "key",
            ) from None
        except ssl.SSLError:
            raise ConfigError(
                f"the client certificate {cert} and key {key} are not a matching PEM pair", "cert"
            ) from None


def tls_warning(verify: bool) -> tuple[str, ...]:
    if verify:
        return ()
    return (
        "TLS without server verification: the engine's identity is not checked"
        " (use only for hosts whose certificate does not name the address you use)",
    )


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
    verification unless --no-docker.tls-verify says otherwise (names of the ``HOST``,
    ``TLS_*`` flags).
    """
    env_verify = bool(env.get("DOCKER_TLS_VERIFY"))
    env_tls = bool(env.get("DOCKER_TLS"))
    flags_tls = any(v is not None for v in (ca, cert, key)) or verify is not None
    tls_on = env_verify or env_tls or flags_tls
    if host is not None and not host.strip():
        raise ConfigError(f"{HOST.name} is empty; give unix:///path or tcp://host:port")
    source = HOST.name if host else "DOCKER_HOST"
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
            f"a client certificate needs its key: give both {TLS_CERT.name} and {TLS_KEY.name}"
        )
    check_tls_files(ca_file, cert_file, key_file)
    settings = TLSSettings(ca_file, cert_file, key_file, verify)
    return EngineConfig(canonical, settings), tls_warning(verify)


def settings_from(
    values: Mapping[str, object], names: Mapping[str, str], base: TargetSettings | None = None
) -> TargetSettings:
    """Per-target settings from raw values keyed by config-file key; ``names`` says how an
    error names each key (a flag or a file field); keys absent from ``values`` keep ``base``.
    """
    schedules = {}
    for s in JOB_SETTINGS:
        old: JobSchedule | None = getattr(base.schedules, s.job) if base else None
        interval = values.get(s.interval_key)
        if interval is None:
            interval = _seconds_text(old.interval) if old else s.interval
        timeout = values.get(s.timeout_key)
        schedules[s.job] = job_schedule(
            s,
            str(interval),
            None if timeout is None else str(timeout),
            (names[s.interval_key], names[s.timeout_key]),
            old.timeout if old else None,
        )
    changes: dict[str, object] = {"schedules": Schedules(**schedules)}
    if values.get("disk_usage_resources") is not None:
        changes["disk_usage_resources"] = parse_resources(
            values["disk_usage_resources"],  # type: ignore[arg-type]
            names["disk_usage_resources"],
        )
    if values.get("container_labels") is not None:
        changes["container_labels"] = parse_label_keys(
            values["container_labels"],  # type: ignore[arg-type]
            names["container_labels"],
        )
    if values.get("max_answer_size") is not None:
        changes["max_answer_bytes"] = parse_size(
            str(values["max_answer_size"]), names["max_answer_size"]
        )
    for key in ("per_image", "per_container", "per_volume", "registry_all_tags", "events"):
        if values.get(key) is not None:
            changes[key] = values[key]
    if values.get("data_root_filesystem") is not None:
        changes["data_root_filesystem"] = str(values["data_root_filesystem"]).strip() or AUTO
    thresholds = dict(base.alert_thresholds) if base else {}
    for t in THRESHOLDS:
        if values.get(t.key) is not None:
            try:
                thresholds[t.name] = parse_threshold(t, str(values[t.key]), names[t.key])
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    changes["alert_thresholds"] = tuple(
        (t.name, thresholds[t.name]) for t in THRESHOLDS if t.name in thresholds
    )
    if base is None:
        return TargetSettings(**changes)  # type: ignore[arg-type]
    return replace(base, **changes)  # type: ignore[arg-type]


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}s"


FLAG_KEYS: dict[str, Flag] = {
    **{
        key: flag
        for s in JOB_SETTINGS
        for key, flag in zip((s.interval_key, s.timeout_key), JOB_FLAGS[s.job])
    },
    "disk_usage_resources": RESOURCES,
    "per_image": PER_IMAGE,
    "per_container": PER_CONTAINER,
    "per_volume": PER_VOLUME,
    "container_labels": LABELS,
    "max_answer_size": MAX_ANSWER,
    "data_root_filesystem": DATA_ROOT_FS,
    "registry_all_tags": REGISTRY_ALL_TAGS,
    "events": EVENTS,
    **{t.key: THRESHOLD_FLAGS[t.name] for t in THRESHOLDS},
}
"""The per-target settings that flags set, by their config-file key."""


def from_flags(values: Mapping[Flag, object], env: Mapping[str, str]) -> Config:
    """Parsed flag values and the environment to a Config; ConfigError on any problem."""

    def text(flag: Flag) -> str | None:
        value = values.get(flag)
        if value is None:
            value = flag.default
        return None if value is None else str(value)

    listen_host, listen_port = parse_listen_address(str(text(LISTEN)))
    if values.get(CONFIG_FILE) is not None:
        for flag in (HOST, TLS_CA, TLS_CERT, TLS_KEY, TLS_VERIFY):
            if values.get(flag) is not None:
                raise ConfigError(
                    f"{flag.name} does not go with {CONFIG_FILE.name}: give each target's"
                    " engine in the file"
                )
    elif values.get(ON_SCRAPE):
        raise ConfigError(f"{ON_SCRAPE.name} needs {CONFIG_FILE.name}")
    engine, warnings = resolve_engine(
        {} if values.get(CONFIG_FILE) is not None else env,
        text(HOST),
        text(TLS_CA),
        text(TLS_CERT),
        text(TLS_KEY),
        values.get(TLS_VERIFY),  # type: ignore[arg-type]
    )
    settings = settings_from(
        {
            key: values.get(flag, flag.default) if flag.boolean else values.get(flag)
            for key, flag in FLAG_KEYS.items()
        },
        {key: flag.name for key, flag in FLAG_KEYS.items()},
    )
    workers_text = str(text(WORKERS))
    if not workers_text.isdigit() or not 0 < int(workers_text) <= 1024:
        raise ConfigError(f"{WORKERS.name} '{workers_text}' is not a number from 1 to 1024")
    return Config(
        listen_host=listen_host,
        listen_port=listen_port,
        log_level=str(text(LOG_LEVEL)),
        target=TargetConfig("", engine, settings),
        config_file=text(CONFIG_FILE),
        workers=int(workers_text),
        collect_on_scrape=bool(values.get(ON_SCRAPE, False)),
        watch_interval=parse_duration(
            str(text(WATCH_INTERVAL)), WATCH_INTERVAL.name, allow_zero=True
        ),
        warnings=warnings,
        healthcheck=bool(values.get(HEALTHCHECK, False)),
        web_config_file=text(WEB_CONFIG),
        max_requests=_max_requests(str(text(MAX_REQUESTS))),
        telemetry_path=_telemetry_path(str(text(TELEMETRY_PATH))),
        exporter_metrics=not values.get(NO_EXPORTER_METRICS, False),
        log_format=str(text(LOG_FORMAT)),
        registry_certs_dir=str(text(REGISTRY_CERTS_DIR)),
    )


def _max_requests(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"{MAX_REQUESTS.name} '{text}' is not 0 (unlimited) or a count")
    return int(text)


def _telemetry_path(path: str) -> str:
    if not path.startswith("/") or path in RESERVED_PATHS or any(c in path for c in "?# "):
        raise ConfigError(
            f"{TELEMETRY_PATH.name} '{path}' must be a path such as /metrics, other than "
            + ", ".join(RESERVED_PATHS)
        )
    return path
