"""The --config.file: named targets, per-target settings and discovery sources.

The file is validated as it is read. Every problem is one ``ConfigError`` line that
names the file, the target and the field, such as
``fleet.yml: target 'build1': tls.ca: cannot read the engine CA file ...``. At start-up
that line ends the exporter with exit 2; on a reload it is logged and the running
configuration stays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    FLAG_KEYS,
    ConfigError,
    EngineConfig,
    TargetConfig,
    TargetSettings,
    TLSSettings,
    check_tls_files,
    parse_host,
    settings_from,
    tls_warning,
)
from .configtext import ECHO_CHARS, TextProblem, cut, parse_yaml, read_text, shorten
from .discovery import NAME_RE, Found, docker_contexts, docker_machines, watched_files
from .registry_credentials import Credentials

TOP_KEYS = ("defaults", "targets", "discover", "registries")
REGISTRY_KEYS = ("username", "password_file")
SETTING_KEYS = tuple(FLAG_KEYS)  # what defaults and each target may set
TARGET_KEYS = ("name", "host", "tls", *SETTING_KEYS)
TLS_KEYS = ("ca", "cert", "key", "verify", "cert_path")
DISCOVER_KEYS = ("docker_contexts", "docker_machine")


@dataclass(frozen=True)
class Loaded:
    targets: tuple[TargetConfig, ...]  # explicit first, then discovered, each name once
    sources: Mapping[str, str]  # target name -> "file", "docker context", "docker-machine"
    notes: tuple[str, ...]  # one line per skipped discovery entry or TLS warning
    watched: tuple[Path, ...]  # the file and the discovery files a change of which reloads
    # registries: per-registry credentials for the registry job, over the docker CLI's
    registry_credentials: Mapping[str, Credentials] = field(default_factory=dict)


class _Where:
    """Builds the one-line errors: '<file>: target '<name>': <field>: <problem>'."""

    def __init__(self, path: str, scope: str = "") -> None:
        self.path = path
        self.scope = scope

    def within(self, scope: str) -> _Where:
        return _Where(self.path, scope)

    def error(self, field: str | None, problem: str) -> ConfigError:
        parts = [self.path]
        if self.scope:
            parts.append(self.scope)
        if field:
            parts.append(field)
        return ConfigError(": ".join([*parts, problem]))

    def prefix(self, exc: ConfigError) -> ConfigError:
        """An error from a shared parser whose message already names the field."""
        problem = shorten(str(exc), 4 * ECHO_CHARS)  # a value it echoes may be huge
        return ConfigError(": ".join(p for p in (self.path, self.scope, problem) if p))


def _mapping(value: object, where: _Where, field: str | None, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(field, f"must be a mapping of {what}")
    for key in value:
        if not isinstance(key, str):
            raise where.error(field, f"key {cut(key)} is not a string")
    return value


def _yaml_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", type(None): "null", dict: "mapping"}
    return names.get(type(value), type(value).__name__)


def _known(values: Mapping[str, Any], known: tuple[str, ...], where: _Where, prefix: str) -> None:
    for key in values:
        if key not in known:
            raise where.error(f"{prefix}{shorten(key)}", f"unknown key (known: {', '.join(known)})")


def _settings(values: Mapping[str, Any], where: _Where, base: TargetSettings) -> TargetSettings:
    given = {k: v for k, v in values.items() if k in SETTING_KEYS}
    for key in ("per_image", "per_container", "per_volume", "events"):
        if key in given and not isinstance(given[key], bool):
            raise where.error(key, "must be true or false")
    for key in ("container_labels", "disk_usage_resources"):
        value = given.get(key)
        if key in given and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise where.error(key, "must be a list of strings")
    for key, value in given.items():
        if (
            isinstance(value, (dict, list))
            and key
            not in (
                "container_labels",
                "disk_usage_resources",
            )
            and not key.endswith(("_interval", "_timeout"))
        ):
            raise where.error(key, f"must be a single value, not a {_yaml_type(value)}")
    for key in SETTING_KEYS:
        if key.endswith(("_interval", "_timeout")) and key in given:
            value = given[key]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise where.error(key, "must be a duration like 15s, 5m or 1h")
    try:
        return settings_from(given, {k: k for k in SETTING_KEYS}, base)
    except ConfigError as exc:
        raise where.prefix(exc) from None


def _engine(raw: Mapping[str, Any], where: _Where) -> tuple[EngineConfig, tuple[str, ...]]:
    host = raw.get("host")
    if host is None:
        raise where.error("host", "is required (unix:///path or tcp://HOST:PORT)")
    if not isinstance(host, str):
        raise where.error("host", "must be a string")
    tls_raw = _mapping(raw.get("tls"), where, "tls", "ca, cert, key, verify or cert_path")
    _known(tls_raw, TLS_KEYS, where, "tls.")
    try:
        canonical = parse_host(host, "", bool(tls_raw)).strip()
    except ConfigError as exc:
        raise where.error("host", str(exc).strip()) from None
    if not tls_raw:
        return EngineConfig(canonical), ()
    if canonical.startswith("unix://"):
        raise where.error("tls", f"needs a tcp:// host, not {canonical}")
    for name in ("ca", "cert", "key", "cert_path"):
        if name in tls_raw and not isinstance(tls_raw[name], str):
            raise where.error(f"tls.{name}", "must be a file path")
    verify = tls_raw.get("verify", True)
    if not isinstance(verify, bool):
        raise where.error("tls.verify", "must be true or false")
    files: dict[str, str | None] = {k: tls_raw.get(k) for k in ("ca", "cert", "key")}
    if "cert_path" in tls_raw:
        given = [f"tls.{k}" for k, v in files.items() if v is not None]
        if given:
            raise where.error("tls.cert_path", f"give either cert_path or {', '.join(given)}")
        cert_dir = Path(os.path.expanduser(tls_raw["cert_path"]))
        files = {k: str(cert_dir / f"{k}.pem") for k in files}
    ca = files["ca"] if verify else None
    cert, key = files["cert"], files["key"]
    if (cert is None) != (key is None):
        missing = "key" if key is None else "cert"
        raise where.error(f"tls.{missing}", "a client certificate needs its key: give both")
    try:
        check_tls_files(ca, cert, key)
    except ConfigError as exc:
        raise where.error(f"tls.{exc.field}" if exc.field else "tls", str(exc)) from None
    warnings = tuple(f"{where.scope}: {w}" for w in tls_warning(verify))
    return EngineConfig(canonical, TLSSettings(ca, cert, key, verify)), warnings


def _discovered(found: Found, settings: TargetSettings) -> tuple[TargetConfig | None, str | None]:
    """A discovered engine as a target, or None and the reason it is left out."""
    where = f"{found.source} {cut(found.name)}"
    try:
        host = parse_host(found.host, "", found.tls).strip()
    except ConfigError as exc:
        return None, f"{where}: skipped: {str(exc).strip()}"
    if not found.tls or host.startswith("unix://"):
        return TargetConfig(found.name, EngineConfig(host), settings), None
    if (found.cert is None) != (found.key is None):
        present, missing = ("cert.pem", "key.pem") if found.key is None else ("key.pem", "cert.pem")
        return None, f"{where}: skipped: it has a {present} but no {missing}"
    ca = found.ca if found.verify else None
    try:
        check_tls_files(ca, found.cert, found.key)
    except ConfigError as exc:
        return None, f"{where}: skipped: {exc}"
    tls = TLSSettings(ca, found.cert, found.key, found.verify)
    return TargetConfig(found.name, EngineConfig(host, tls), settings), None


def _discover_path(value: object, where: _Where, key: str, default: Path) -> Path | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    if isinstance(value, str) and value:
        return Path(os.path.expanduser(value))
    raise where.error(key, "must be true, false or a directory")


def load(path: str, base: TargetSettings, env: Mapping[str, str]) -> Loaded:
    """Read and validate the file, then run its discovery sources; ConfigError on a problem."""
    top = _Where(path)
    try:
        data = parse_yaml(read_text(path))
    except TextProblem as exc:
        raise top.error(None, str(exc)) from None
    doc = _mapping(data, top, None, "defaults, targets and discover")
    _known(doc, TOP_KEYS, top, "")

    defaults_raw = _mapping(doc.get("defaults"), top, "defaults", "per-target settings")
    defaults_where = top.within("defaults")
    _known(defaults_raw, SETTING_KEYS, defaults_where, "")
    defaults = _settings(defaults_raw, defaults_where, base)

    targets_raw = doc.get("targets") or []
    if not isinstance(targets_raw, list):
        raise top.error("targets", "must be a list of targets")
    targets: list[TargetConfig] = []
    sources: dict[str, str] = {}
    notes: list[str] = []
    for index, entry in enumerate(targets_raw):
        at = top.within(f"targets[{index}]")
        raw = _mapping(entry, at, None, "target settings (name, host, tls, ...)")
        name = raw.get("name")
        if name is None:
            raise at.error("name", "is required")
        if not isinstance(name, str):
            raise at.error("name", f"YAML read {cut(name)} as a {_yaml_type(name)}: quote it")
        if not NAME_RE.fullmatch(name):
            raise at.error("name", f"{cut(name)} does not match [A-Za-z0-9_.-]+")
        where = top.within(f"target {cut(name)}")
        if name in sources:
            raise where.error("name", "is used by an earlier target too")
        _known(raw, TARGET_KEYS, where, "")
        engine, warnings = _engine(raw, where)
        targets.append(TargetConfig(name, engine, _settings(raw, where, defaults)))
        sources[name] = "file"
        notes.extend(warnings)

    discover_raw = _mapping(doc.get("discover"), top, "discover", "discovery sources")
    discover_where = top.within("discover")
    _known(discover_raw, DISCOVER_KEYS, discover_where, "")
    home = Path(env.get("HOME") or Path.home())
    config_dir = _discover_path(
        discover_raw.get("docker_contexts"),
        discover_where,
        "docker_contexts",
        Path(env.get("DOCKER_CONFIG") or home / ".docker"),
    )
    store = _discover_path(
        discover_raw.get("docker_machine"),
        discover_where,
        "docker_machine",
        Path(env.get("MACHINE_STORAGE_PATH") or home / ".docker" / "machine"),
    )
    found: list[Found] = []
    for key, source, args in (
        ("docker_contexts", docker_contexts, config_dir),
        ("docker_machine", docker_machines, store),
    ):
        if args is not None and not args.is_dir():
            notes.append(f"discover.{key}: {shorten(str(args))} is not a directory: nothing found")
        if args is not None:
            more, skipped = source(args)
            found.extend(more)
            notes.extend(skipped)
    for entry in found:
        if entry.name in sources:
            if sources[entry.name] == "file":
                continue  # an explicit target of the same name wins
            notes.append(
                f"{entry.source} {cut(entry.name)}: skipped: a {sources[entry.name]} has that name"
            )
            continue
        target, note = _discovered(entry, defaults)
        if target is None:
            notes.append(str(note))
            continue
        targets.append(target)
        sources[target.name] = entry.source
    credentials, password_files = _registries(doc.get("registries"), top)
    watched = (Path(path), *watched_files(config_dir, store), *password_files)
    return Loaded(tuple(targets), sources, tuple(notes), watched, credentials)


def _registries(value: object, top: _Where) -> tuple[dict[str, Credentials], list[Path]]:
    """``registries: {HOST[:PORT]: {username: U, password_file: PATH}}``: credentials for
    the registry job, winning over the docker CLI's config.json (docker.io for Docker Hub)."""
    raw = _mapping(value, top, "registries", "registries by host[:port]")
    found: dict[str, Credentials] = {}
    files: list[Path] = []
    for host, entry in raw.items():
        where = top.within(f"registries.{host}")
        fields = _mapping(entry, where, None, "username and password_file")
        _known(fields, REGISTRY_KEYS, where, "")
        username, password_file = fields.get("username"), fields.get("password_file")
        if not isinstance(username, str) or not username:
            raise where.error("username", "is required")
        if not isinstance(password_file, str) or not password_file:
            raise where.error("password_file", "is required (a file holding the password)")
        try:
            password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "strerror", None) or exc
            raise where.error("password_file", f"cannot read {password_file}: {problem}") from None
        found[str(host)] = Credentials(username, password)
        files.append(Path(password_file))
    return found, files
