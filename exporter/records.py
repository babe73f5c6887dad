"""Typed records parsed from the engine's JSON answers.

Parsing tolerates what real engines send: missing, null and extra fields, and the
differences between API versions and Podman. A value the engine did not give (absent,
null, or one of its ``-1`` "not computed" sentinels) becomes ``None``, never a number.
Only a top-level shape that cannot be an answer of that endpoint raises ``EngineDataError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class EngineDataError(ValueError):
    """The engine answered with something that is not the documented shape."""


NONE_TAG = "<none>:<none>"
NONE_DIGEST = "<none>@<none>"
_EXIT_RE = re.compile(r"^Exited \((-?\d+)\)")
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _count(raw: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer field; None for absent, null, sentinels and junk."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value < 0 or value != value:  # -1 sentinels, NaN
        return None
    return int(value)


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _strs(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _labels(raw: Mapping[str, Any], key: str = "Labels") -> dict[str, str]:
    value = raw.get(key)
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _objects(data: object, endpoint: str) -> list[Mapping[str, Any]]:
    if not isinstance(data, list):
        raise EngineDataError(f"{endpoint} answered {type(data).__name__}, expected a list")
    return [item for item in data if isinstance(item, dict)]


def _created(raw: Mapping[str, Any]) -> int | None:
    created = _count(raw, "Created")
    return created if created else None  # 0 means "unknown" in every engine


@dataclass(frozen=True)
class ImageRecord:
    id: str  # full "sha256:..."
    repo_tags: tuple[str, ...]  # without the <none>:<none> placeholder
    repo_digests: tuple[str, ...]
    created: int | None
    size: int | None
    shared_size: int | None
    containers: int | None  # None where the engine did not count (-1 before API 1.51)


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    name: str  # without the leading slash
    image: str  # the reference it was created from, or an image ID once that tag moved
    image_id: str
    created: int | None
    state: str
    status: str
    health: str | None  # healthy / unhealthy / starting, or None without a healthcheck
    exit_code: int | None
    labels: Mapping[str, str]
    size_rw: int | None = None
    size_root_fs: int | None = None


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    os: str
    arch: str
    kernel_version: str
    product: str


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    size: int | None
    ref_count: int | None


@dataclass(frozen=True)
class BuildCacheRecord:
    id: str
    size: int | None
    in_use: bool
    shared: bool


@dataclass(frozen=True)
class DiskUsageRecord:
    layers_size: int | None
    images: tuple[ImageRecord, ...]
    containers: tuple[ContainerRecord, ...]
    volumes: tuple[VolumeRecord, ...] | None  # None where the answer had no such section
    build_cache: tuple[BuildCacheRecord, ...] | None


def parse_image(raw: Mapping[str, Any]) -> ImageRecord:
    return ImageRecord(
        id=_str(raw, "Id"),
        # "<none>:<none>" before API 1.43; Podman's /system/df says "<none>"
        repo_tags=tuple(t for t in _strs(raw, "RepoTags") if t not in (NONE_TAG, "<none>")),
        repo_digests=tuple(d for d in _strs(raw, "RepoDigests") if d != NONE_DIGEST),
        created=_created(raw),
        size=_count(raw, "Size"),
        shared_size=_count(raw, "SharedSize"),
        containers=_count(raw, "Containers"),
    )


def parse_images(data: object) -> tuple[ImageRecord, ...]:
    return tuple(parse_image(raw) for raw in _objects(data, "/images/json") if _str(raw, "Id"))


def _container_name(raw: Mapping[str, Any]) -> str:
    # The API puts one "/" before each name; only that one is removed, so a name that
    # itself starts with "/" (Docker never makes one, other engines might) stays as sent.
    names = [n.removeprefix("/") for n in _strs(raw, "Names") if n.removeprefix("/")]
    # A linked container also carries "/other/alias" names: prefer the plain one.
    plain = [n for n in names if "/" not in n]
    if plain:
        return plain[0]
    return names[0] if names else _str(raw, "Id")[:12]


def _health(raw: Mapping[str, Any], status: str) -> str | None:
    health = raw.get("Health")
    if isinstance(health, dict):
        value = health.get("Status")
        if value in ("healthy", "unhealthy", "starting"):
            return str(value)
        if value in ("none", "", None):
            return None
    match = _HEALTH_RE.search(status)
    if not match:
        return None
    return "starting" if match.group(1) == "health: starting" else match.group(1)


def _exit_code(raw: Mapping[str, Any], state: str, status: str) -> int | None:
    if state != "exited":
        return None
    exit_code = raw.get("ExitCode")  # Podman's list carries it; Docker's only in Status
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        return exit_code
    match = _EXIT_RE.match(status)
    return int(match.group(1)) if match else None


def parse_container(raw: Mapping[str, Any]) -> ContainerRecord:
    state = _str(raw, "State").lower()
    status = _str(raw, "Status")
    return ContainerRecord(
        id=_str(raw, "Id"),
        name=_container_name(raw),
        image=_str(raw, "Image"),
        image_id=_str(raw, "ImageID"),
        created=_created(raw),
        state=state,
        status=status,
        health=_health(raw, status),
        exit_code=_exit_code(raw, state, status),
        labels=_labels(raw),
        size_rw=_count(raw, "SizeRw"),
        size_root_fs=_count(raw, "SizeRootFs"),
    )


def parse_containers(data: object) -> tuple[ContainerRecord, ...]:
    return tuple(
        parse_container(raw) for raw in _objects(data, "/containers/json") if _str(raw, "Id")
    )


def parse_version(data: object) -> EngineInfo:
    if not isinstance(data, dict):
        raise EngineDataError(f"/version answered {type(data).__name__}, expected an object")
    product = "Docker Engine"
    components = data.get("Components")
    if isinstance(components, list) and components and isinstance(components[0], dict):
        name = _str(components[0], "Name")
        if name == "Engine":
            product = "Docker Engine"
        elif name:
            product = name
    elif "podman" in _str(data, "Version").lower():
        product = "Podman Engine"
    return EngineInfo(
        version=_str(data, "Version"),
        api_version=_str(data, "ApiVersion"),
        os=_str(data, "Os"),
        arch=_str(data, "Arch"),
        kernel_version=_str(data, "KernelVersion"),
        product=product,
    )


def _volume(raw: Mapping[str, Any]) -> VolumeRecord:
    usage = raw.get("UsageData")
    usage = usage if isinstance(usage, dict) else {}
    return VolumeRecord(
        name=_str(raw, "Name"), size=_count(usage, "Size"), ref_count=_count(usage, "RefCount")
    )


def _build_cache(raw: Mapping[str, Any]) -> BuildCacheRecord:
    return BuildCacheRecord(
        id=_str(raw, "ID"),
        size=_count(raw, "Size"),
        in_use=raw.get("InUse") is True,
        shared=raw.get("Shared") is True,
    )


def parse_disk_usage(data: object) -> DiskUsageRecord:
    if not isinstance(data, dict):
        raise EngineDataError(f"/system/df answered {type(data).__name__}, expected an object")

    def section(key: str) -> list[Mapping[str, Any]] | None:
        value = data.get(key)
        if value is None:
            return None if key not in data else []
        return _objects(value, f"/system/df {key}")

    images = section("Images") or []
    containers = section("Containers") or []
    volumes = section("Volumes")
    cache = section("BuildCache")
    return DiskUsageRecord(
        layers_size=_count(data, "LayersSize"),
        images=tuple(parse_image(r) for r in images if _str(r, "Id")),
        containers=tuple(parse_container(r) for r in containers if _str(r, "Id")),
        volumes=None if volumes is None else tuple(_volume(r) for r in volumes),
        build_cache=None if cache is None else tuple(_build_cache(r) for r in cache),
    )
