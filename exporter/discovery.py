"""Discovery: the engines the docker CLI already knows, from its context store and
docker-machine's store, read from the files both keep (nothing is run, nothing is asked).

- A context is ``$DOCKER_CONFIG/contexts/meta/<sha256 of name>/meta.json`` (``Name``,
  ``Endpoints.docker.Host``, ``Endpoints.docker.SkipTLSVerify``) with its TLS files in
  ``contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem``.
- A machine is ``<store>/machines/<name>/config.json`` (``Driver.IPAddress``); its engine
  listens on 2376 with ``ca.pem``, ``cert.pem`` and ``key.pem`` beside the config. A machine
  of the ``none`` driver (``docker-machine create -d none --url tcp://...``) names its
  engine in ``Driver.URL`` instead, as ``docker-machine url`` answers.

Each source returns what it found and one note per entry it skipped, saying why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .configtext import MAX_DISCOVERY_FILE_BYTES, TextProblem, cut, read_text, shorten

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")  # always with fullmatch
MACHINE_PORT = 2376


@dataclass(frozen=True)
class Found:
    """An engine a discovery source names, before the file's defaults are applied."""

    name: str
    host: str
    ca: str | None
    cert: str | None
    key: str | None
    verify: bool
    tls: bool
    source: str  # "docker context" or "docker-machine"


def context_digest(name: str) -> str:
    """The directory name the CLI stores a context under."""
    return hashlib.sha256(name.encode()).hexdigest()


def _json(path: Path) -> Any:
    """A discovery file's JSON: a regular file under the cap; TextProblem or ValueError."""
    return json.loads(read_text(path, MAX_DISCOVERY_FILE_BYTES))


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def docker_contexts(config_dir: Path) -> tuple[list[Found], list[str]]:
    found: list[Found] = []
    notes: list[str] = []
    meta_root = config_dir / "contexts" / "meta"
    for meta_path in sorted(meta_root.glob("*/meta.json")):
        where = f"docker context in {meta_path.parent}"
        try:
            meta = _json(meta_path)
            name = meta["Name"]
            endpoint = meta["Endpoints"]["docker"]
            host = endpoint["Host"]
        except TextProblem as exc:
            notes.append(f"{where}: skipped: meta.json {exc}")
            continue
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            problem = f"{type(exc).__name__}: {shorten(str(exc))}"
            notes.append(f"{where}: skipped: unreadable meta.json ({problem})")
            continue
        if not isinstance(name, str) or not isinstance(host, str):
            notes.append(f"{where}: skipped: meta.json has no Name or Endpoints.docker.Host")
            continue
        where = f"docker context {cut(name)}"
        if host.startswith("ssh://"):
            notes.append(
                f"{where}: skipped: {shorten(host)} is an ssh:// host; the exporter reaches engines"
                " over tcp:// or unix:// only"
            )
            continue
        if not NAME_RE.fullmatch(name):
            notes.append(f"{where}: skipped: the name is not a valid target name [A-Za-z0-9_.-]+")
            continue
        tls_dir = config_dir / "contexts" / "tls" / meta_path.parent.name / "docker"
        ca, cert, key = (_existing(tls_dir / f) for f in ("ca.pem", "cert.pem", "key.pem"))
        skip_verify = bool(endpoint.get("SkipTLSVerify", False))
        found.append(
            Found(
                name,
                host,
                ca,
                cert,
                key,
                verify=not skip_verify,
                tls=host.startswith("tcp://")
                and (ca is not None or cert is not None or skip_verify),
                source="docker context",
            )
        )
    return found, notes


def docker_machines(store: Path) -> tuple[list[Found], list[str]]:
    found: list[Found] = []
    notes: list[str] = []
    for config_path in sorted((store / "machines").glob("*/config.json")):
        machine_dir = config_path.parent
        name = machine_dir.name
        where = f"docker-machine {cut(name)}"
        try:
            driver = _json(config_path)["Driver"]
            address = driver.get("IPAddress")
            url = driver.get("URL")
        except TextProblem as exc:
            notes.append(f"{where}: skipped: config.json {exc}")
            continue
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = f"{type(exc).__name__}: {shorten(str(exc))}"
            notes.append(f"{where}: skipped: unreadable config.json ({problem})")
            continue
        if isinstance(url, str) and url.startswith("tcp://"):
            host = url
        elif isinstance(address, str) and address:
            host = f"tcp://{f'[{address}]' if ':' in address else address}:{MACHINE_PORT}"
        else:
            notes.append(f"{where}: skipped: config.json has no Driver.IPAddress (not created?)")
            continue
        if not NAME_RE.fullmatch(name):
            notes.append(f"{where}: skipped: the name is not a valid target name [A-Za-z0-9_.-]+")
            continue
        found.append(
            Found(
                name,
                host,
                str(machine_dir / "ca.pem"),
                str(machine_dir / "cert.pem"),
                str(machine_dir / "key.pem"),
                verify=True,
                tls=True,
                source="docker-machine",
            )
        )
    return found, notes


def watched_files(config_dir: Path | None, store: Path | None) -> Iterator[Path]:
    """The files whose change means the discovered engines may have changed."""
    if config_dir is not None:
        yield config_dir / "contexts" / "meta"
        yield from sorted((config_dir / "contexts" / "meta").glob("*/meta.json"))
        yield from sorted((config_dir / "contexts" / "tls").glob("*/docker/*.pem"))
    if store is not None:
        yield store / "machines"
        for machine in sorted((store / "machines").glob("*/config.json")):
            yield machine
            yield from sorted(machine.parent.glob("*.pem"))
