"""Typed records parsed from the engine's JSON answers.

Parsing tolerates what real engines send: missing, null and extra fields, and the
differences between API versions and Podman. A value the engine did not give (absent,
null, or one of its ``-1`` "not computed" sentinels) becomes ``None``, never a number.
Only a top-level shape that cannot be an answer of that endpoint raises ``EngineDataError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Generic, Optional, Protocol, TypeVar, Union, overload

import msgspec

from .priority import checkpoint, paced

Body = Union[bytes, bytearray]  # an answer as read from the engine
Keys = Optional[Collection[str]]  # label keys to keep; None keeps every label


class EngineDataError(ValueError):
    """The engine answered with something that is not the documented shape."""


_INT64_MAX = 2**63 - 1
NONE_TAG = "<none>:<none>"
NONE_DIGEST = "<none>@<none>"
_EXIT_RE = re.compile(r"^Exited \((-?\d+)\)")
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


class Fields(Protocol):
    """A JSON object's fields: a decoded dict, or a struct that decoded only the fields used."""

    def get(self, key: str, /) -> Any: ...


def _count(raw: Fields, key: str) -> int | None:
    """A non-negative integer field; None for absent, null, sentinels and junk."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    # -1 sentinels, NaN, 1e400 read as infinity, and integers past the engine's int64
    if value < 0 or not math.isfinite(value) or value > _INT64_MAX:
        return None
    return int(value)


def text(value: str) -> str:
    """A string as UTF-8 can carry it: a lone surrogate (JSON allows "\\udc80") becomes U+FFFD.

    Such a string cannot be encoded, so it would break every rendering of the exposition.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _str(raw: Fields, key: str) -> str:
    value = raw.get(key)
    return text(value) if isinstance(value, str) else ""


def _strs(raw: Fields, key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(text(v) for v in value if isinstance(v, str))


def _labels(raw: Fields, keys: Keys) -> dict[str, str]:
    value = raw.get("Labels")
    if not isinstance(value, dict):
        return {}
    return {
        text(str(k)): text(v)
        for k, v in value.items()
        if isinstance(v, str) and _kept(str(k), keys)
    }


def _kept(key: str, keys: Keys) -> bool:
    return keys is None or key in keys


def _objects(data: object, endpoint: str) -> list[Mapping[str, Any]]:
    if not isinstance(data, list):
        raise EngineDataError(f"{endpoint} answered {type(data).__name__}, expected a list")
    return [item for item in data if isinstance(item, dict)]


def _created(raw: Fields) -> int | None:
    created = _count(raw, "Created")
    return created if created else None  # 0 means "unknown" in every engine


# Records and facts are frozen msgspec structs the garbage collector does not track (they
# hold strings, numbers, tuples and string maps: never a cycle). A collection at 10k
# containers makes tens of thousands: as dataclasses they made its GC passes many and long
# (docs/scale-cost.md).
class ImageRecord(msgspec.Struct, frozen=True, gc=False):
    id: str  # full "sha256:..."
    repo_tags: tuple[str, ...]  # without the <none>:<none> placeholder
    repo_digests: tuple[str, ...]
    created: int | None
    size: int | None
    shared_size: int | None
    containers: int | None  # None where the engine did not count (-1 before API 1.51)
    # Docker's containerd image store (the image has a Descriptor): RepoDigests name every
    # tagged image's own manifest digest, built here or pulled; the classic store records
    # one only on a pull or a push
    own_digests: bool = False


class ContainerRecord(msgspec.Struct, frozen=True, gc=False):
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
    data_root: str = ""  # DockerRootDir from /info, "" when unknown
    storage_driver: str = ""  # Driver from /info
    swarm_manager: bool = False  # /info: an active Swarm manager (Swarm.ControlAvailable)


# The labels that name a container's or volume's project: docker compose's, then a Swarm
# stack's. Kept on every record whatever --collect.container-labels allows.
PROJECT_LABELS = ("com.docker.compose.project", "com.docker.stack.namespace")
_TIME_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)$"
)


def project_of(labels: Mapping[str, str]) -> str:
    """The compose project or Swarm stack a labelled object belongs to; "" for none."""
    for key in PROJECT_LABELS:
        value = labels.get(key)
        if value:
            return value
    return ""


def timestamp(value: object) -> float | None:
    """An RFC 3339 time as the engine writes it (nanoseconds, Z or an offset) to Unix
    seconds; None for absent, junk and Go's zero time (year 1: "never")."""
    if not isinstance(value, str):
        return None
    match = _TIME_RE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year <= 1:
        return None
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    offset = 0
    if zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 60 + int(digits[2:])) * 60 * (1 if zone[0] == "+" else -1)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None
    return moment.timestamp() + fraction - offset


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    size: int | None
    ref_count: int | None
    driver: str = ""
    created: float | None = None
    project: str = ""  # from the volume's compose or stack label


@dataclass(frozen=True)
class BuildCacheRecord:
    id: str
    size: int | None
    in_use: bool
    shared: bool
    type: str = ""  # regular, source.local, exec.cachemount, internal, frontend, ...
    created: float | None = None
    last_used: float | None = None  # None: never used since created (BuildKit's null)
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiskUsageRecord:
    layers_size: int | None
    images: tuple[ImageRecord, ...]
    containers: tuple[ContainerRecord, ...]
    volumes: tuple[VolumeRecord, ...] | None  # None where the answer had no such section
    build_cache: tuple[BuildCacheRecord, ...] | None


def parse_image(raw: Fields) -> ImageRecord:
    return ImageRecord(
        id=_str(raw, "Id"),
        # "<none>:<none>" before API 1.43; Podman's /system/df says "<none>"
        repo_tags=tuple(t for t in _strs(raw, "RepoTags") if t not in (NONE_TAG, "<none>")),
        repo_digests=tuple(d for d in _strs(raw, "RepoDigests") if d != NONE_DIGEST),
        created=_created(raw),
        size=_count(raw, "Size"),
        shared_size=_count(raw, "SharedSize"),
        containers=_count(raw, "Containers"),
        own_digests=isinstance(raw.get("Descriptor"), dict),
    )


def _unique(records: Iterable[Any], *keys: str) -> Iterator[Any]:
    """The first record for each value of each key: an engine listing an object twice
    must not yield two identical series or count it twice."""
    seen: dict[str, set[str]] = {key: set() for key in keys}
    for record in records:
        values = [getattr(record, key) for key in keys]
        if any(v in seen[k] for k, v in zip(keys, values)):
            continue
        for k, v in zip(keys, values):
            seen[k].add(v)
        yield record


def parse_images(data: object) -> tuple[ImageRecord, ...]:
    images = (parse_image(raw) for raw in _objects(data, "/images/json") if _str(raw, "Id"))
    return tuple(_unique(images, "id"))


def _container_name(names: list[str] | tuple[str, ...], container_id: str) -> str:
    # The API puts one "/" before each name; only that one is removed, so a name that
    # itself starts with "/" (Docker never makes one, other engines might) stays as sent.
    stripped = [n.removeprefix("/") for n in names if n.removeprefix("/")]
    # A linked container also carries "/other/alias" names: prefer the plain one.
    plain = [n for n in stripped if "/" not in n]
    if plain:
        return plain[0]
    return stripped[0] if stripped else container_id[:12]


def _health(health: object, status: str) -> str | None:
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


def _exit_code(exit_code: object, state: str, status: str) -> int | None:
    if state != "exited":
        return None
    # Podman's list carries ExitCode; Docker's only in Status
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        return exit_code
    match = _EXIT_RE.match(status)
    return int(match.group(1)) if match else None


def parse_container(raw: Fields, label_keys: Keys = None) -> ContainerRecord:
    """``label_keys``: the labels to keep (None: all of them)."""
    state = _str(raw, "State").lower()
    status = _str(raw, "Status")
    return ContainerRecord(
        id=_str(raw, "Id"),
        name=_container_name(_strs(raw, "Names"), _str(raw, "Id")),
        image=_str(raw, "Image"),
        image_id=_str(raw, "ImageID"),
        created=_created(raw),
        state=state,
        status=status,
        health=_health(raw.get("Health"), status),
        exit_code=_exit_code(raw.get("ExitCode"), state, status),
        labels=_labels(raw, label_keys),
        size_rw=_count(raw, "SizeRw"),
        size_root_fs=_count(raw, "SizeRootFs"),
    )


def parse_containers(data: object, label_keys: Keys = None) -> tuple[ContainerRecord, ...]:
    containers = (
        parse_container(raw, label_keys)
        for raw in _objects(data, "/containers/json")
        if _str(raw, "Id")
    )
    return tuple(_unique(containers, "id", "name"))


# --- decoding straight from the engine's bytes -------------------------------------------------
# msgspec decodes only the fields the records use, into typed structs, and skips the rest
# (ports, mounts, networks: most of a container's bytes) without building them. An answer
# that does not have exactly those types (an element that is not an object, a label that is
# not a string, a number out of range, a lone surrogate) goes through json.loads and the
# tolerant parsing above instead; tests check that both paths give the same records.


_NULL = msgspec.Raw(b"null")

# msgspec reads these annotations at run time: Union, for Python 3.9
Number = Union[int, float, None]
Str = Union[str, None]
Strs = Union[list[str], None]
StrMap = Union[dict[str, str], None]


class _RawImage(msgspec.Struct, gc=False):
    Id: str = ""
    RepoTags: Strs = None
    RepoDigests: Strs = None
    Created: Number = None
    Size: Number = None
    SharedSize: Number = None
    Containers: Number = None
    Descriptor: Any = None


class _RawContainer(msgspec.Struct, gc=False):
    Id: str = ""
    Names: Strs = None
    Image: Str = None
    ImageID: Str = None
    Created: Number = None
    State: Str = None
    Status: Str = None
    Health: Any = None
    ExitCode: Any = None
    Labels: msgspec.Raw = _NULL  # decoded one container at a time, for the kept keys only
    SizeRw: Number = None
    SizeRootFs: Number = None


def _number(value: Number) -> int | None:
    """As _count, for a value already known to be a number or null (1e400 is infinity)."""
    if value is None or value < 0 or not math.isfinite(value) or value > _INT64_MAX:
        return None
    return int(value)


def _image_of(raw: _RawImage) -> ImageRecord:
    created = _number(raw.Created)
    return ImageRecord(
        id=text(raw.Id),
        repo_tags=tuple(text(t) for t in raw.RepoTags or () if t not in (NONE_TAG, "<none>")),
        repo_digests=tuple(text(d) for d in raw.RepoDigests or () if d != NONE_DIGEST),
        created=created if created else None,
        size=_number(raw.Size),
        shared_size=_number(raw.SharedSize),
        containers=_number(raw.Containers),
        own_digests=isinstance(raw.Descriptor, dict),
    )


def _container_of(raw: _RawContainer, label_keys: Keys) -> ContainerRecord:
    state = text(raw.State or "").lower()
    status = text(raw.Status or "")
    created = _number(raw.Created)
    return ContainerRecord(
        id=text(raw.Id),
        name=text(_container_name(raw.Names or (), raw.Id)),
        image=text(raw.Image or ""),
        image_id=text(raw.ImageID or ""),
        created=created if created else None,
        state=state,
        status=status,
        health=_health(raw.Health, status),
        exit_code=_exit_code(raw.ExitCode, state, status),
        labels=_labels_of(raw.Labels, label_keys),
        size_rw=_number(raw.SizeRw),
        size_root_fs=_number(raw.SizeRootFs),
    )


def _labels_of(labels: Any, keys: Keys) -> dict[str, str]:
    """A container's kept labels: from its raw JSON, or from a struct of the kept keys."""
    if isinstance(labels, msgspec.Raw):
        return _kept_labels(_LABELS.decode(labels) or {}, keys)
    if labels is None:
        return {}
    names: tuple[str, ...] = labels.__struct_encode_fields__  # the label keys, in order
    values = msgspec.structs.astuple(labels)
    return {text(k): text(v) for k, v in zip(names, values) if v is not None}


_IMAGES = msgspec.json.Decoder(list[_RawImage])
_LABELS = msgspec.json.Decoder(StrMap)
_CONTAINERS = msgspec.json.Decoder(list[_RawContainer])


_NOT_A_FIELD_NAME = re.compile(r'[\\"\x00-\x1f]')  # what msgspec cannot rename a field to


@lru_cache(maxsize=16)
def _containers_decoder(keys: frozenset[str] | None) -> msgspec.json.Decoder[Any] | None:
    """A decoder of /containers/json that keeps the labels ``keys`` only, decoded as a
    struct of just those, so that no container refers back to the answer's bytes, which
    can then be freed before the records are built. None where the labels are kept as raw
    JSON instead (all of them; a key msgspec cannot name a field after)."""
    if keys is None or any(_NOT_A_FIELD_NAME.search(key) for key in keys):
        return None
    fields = [(f"k{i}", Str, None) for i in range(len(keys))]
    names = {f"k{i}": key for i, key in enumerate(sorted(keys))}
    kept = msgspec.defstruct("_RawLabels", fields, rename=names, gc=False)
    container = msgspec.defstruct(
        "_RawContainerKept", [("Labels", Optional[kept], None)], bases=(_RawContainer,), gc=False
    )
    return msgspec.json.Decoder(list[container])  # type: ignore[valid-type]


R = TypeVar("R")
T = TypeVar("T")


def _drained(raws: list[R]) -> Iterator[R]:
    """The items of ``raws`` in order, each let go of once taken: the structs decoded from
    an answer are freed while the records built from them grow."""
    raws.reverse()
    while raws:
        checkpoint()
        yield raws.pop()


def _release(body: Body) -> None:
    """Free the engine client's read buffer once its answer is decoded."""
    if isinstance(body, bytearray):
        body.clear()


def decode_images(body: Body, release: bool = False) -> tuple[ImageRecord, ...]:
    """/images/json's bytes to records; ValueError when they are not JSON.

    ``release``: empty ``body`` (a bytearray the caller owns) once it is decoded."""
    checkpoint()
    try:
        raws = _IMAGES.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return parse_images(json.loads(body))
    if release:
        _release(body)
    return tuple(_unique((_image_of(raw) for raw in _drained(raws) if raw.Id), "id"))


def _kept_labels(labels: dict[str, str], keys: Keys) -> dict[str, str]:
    return {text(k): text(v) for k, v in labels.items() if keys is None or k in keys}


# Docker writes each container's "Id" first (its Go struct's first field), with nothing
# between two of them: an answer can be cut there into pieces, each decoded on its own, so
# that one call into msgspec never holds the interpreter for a whole 13 MB answer (12 ms at
# 10k containers) and a scrape gets it in between. A piece cut anywhere else would not be
# valid JSON; the whole answer (or the rest of it) is then decoded at once, as before.
_NEXT_CONTAINER = b'},{"Id":'
PIECE_BYTES = 1 << 19


def _pieces(body: Body, size: int | None = None) -> Iterator[Body]:
    """``body``, a JSON array of containers, as arrays of about ``size`` bytes each."""
    size = size or PIECE_BYTES
    if len(body) < 2 * size or not body.startswith(b"["):
        yield body
        return
    start = 1
    while True:
        cut = body.find(_NEXT_CONTAINER, start + size)
        if cut < 0:
            yield b"[" + body[start:]  # with the answer's own closing bracket
            return
        yield b"[" + body[start : cut + 1] + b"]"
        start = cut + 2


def decode_containers(
    body: Body, label_keys: Keys = None, release: bool = False
) -> tuple[ContainerRecord, ...]:
    """/containers/json's bytes to records; ValueError when they are not JSON.

    ``label_keys``: the labels to keep (None: all of them). Keeping only the allowlisted
    ones spares a dict of every container's labels (most of its bytes on compose hosts).
    With them, the answer is decoded a piece at a time, and ``release`` empties ``body``
    (a bytearray the caller owns) once it is decoded: 13 MB at 10k containers.
    """
    keys = None if label_keys is None else frozenset(label_keys)
    decoder = _containers_decoder(keys)
    try:
        if decoder is not None:
            containers: list[ContainerRecord] = []
            for piece in _pieces(body):
                # each piece's structs are freed once its records are built
                containers += [_container_of(raw, keys) for raw in decoder.decode(piece) if raw.Id]
            if release:
                _release(body)
            return tuple(_unique(containers, "id", "name"))
        containers_ = (_container_of(raw, keys) for raw in _CONTAINERS.decode(body) if raw.Id)
        return tuple(_unique(containers_, "id", "name"))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return parse_containers(json.loads(body), label_keys)


class ContainerStream(Generic[T]):
    """/containers/json decoded while it is read, a piece at a time (see ``_pieces``): the
    whole answer (13 MB at 10k containers) is never held, only the piece being read.

    ``feed`` takes the answer's bytes as they come, ``end`` gives the records, the same as
    ``decode_containers`` gives for the whole answer; or, with ``convert``, what it makes of
    each record as its piece is decoded (the inventory's facts: the records of a whole
    answer, 9 MB at 10k containers, are then never held together). A piece msgspec
    refuses, and all that follows it, is parsed at the end by the tolerant path, as a whole
    answer would be.
    """

    @overload
    def __init__(self: ContainerStream[ContainerRecord], label_keys: Keys = None) -> None: ...

    @overload
    def __init__(self, label_keys: Keys, convert: Callable[[ContainerRecord], T]) -> None: ...

    def __init__(
        self, label_keys: Keys = None, convert: Callable[[ContainerRecord], Any] | None = None
    ) -> None:
        self.keys = None if label_keys is None else frozenset(label_keys)
        self._convert: Callable[[ContainerRecord], Any] = convert or (lambda record: record)
        self._decoder = _containers_decoder(self.keys)
        self._pending = bytearray()  # "[" and what came after the last piece decoded
        self._out: list[T] = []
        # the first container for each ID and each name, as _unique keeps them
        self._ids: set[str] = set()
        self._names: set[str] = set()
        self._cut = False  # a piece was decoded
        self._look_from = PIECE_BYTES  # where the next cut is looked for in _pending
        # without a decoder that frees the answer, it is read whole and decoded at the end
        self._whole = self._decoder is None

    def _add(self, records: Iterable[ContainerRecord]) -> None:
        ids, names, convert = self._ids, self._names, self._convert
        out = self._out
        for record in records:
            if record.id in ids or record.name in names:
                continue
            ids.add(record.id)
            names.add(record.name)
            out.append(convert(record))

    def feed(self, chunk: bytes) -> None:
        pending = self._pending
        pending += chunk
        if self._whole or len(pending) < 2 * PIECE_BYTES:
            return
        if not pending.startswith(b"["):
            self._whole = True  # not an array: the tolerant path says what it is
            return
        cut = pending.find(_NEXT_CONTAINER, self._look_from)
        if cut < 0:  # not yet (or not this engine's form): look at the new bytes next time
            self._look_from = len(pending) - len(_NEXT_CONTAINER) + 1
            return
        assert self._decoder is not None
        try:
            raws = self._decoder.decode(pending[: cut + 1] + b"]")
        except (msgspec.DecodeError, UnicodeDecodeError):
            self._whole = True
            return
        self._add([_container_of(raw, self.keys) for raw in paced(raws) if raw.Id])
        self._cut = True
        del raws
        self._pending = bytearray(b"[") + pending[cut + 2 :]
        self._look_from = PIECE_BYTES

    def end(self) -> tuple[T, ...]:
        """The records (or what ``convert`` made of them); ValueError (EngineDataError) as
        ``decode_containers`` raises it."""
        pending, self._pending = self._pending, bytearray()
        if not self._cut:
            self._add(decode_containers(pending, self.keys, release=True))
        else:
            try:
                if self._whole:
                    raise msgspec.DecodeError("a piece msgspec refused")
                assert self._decoder is not None
                raws = self._decoder.decode(pending)
                self._add([_container_of(raw, self.keys) for raw in paced(raws) if raw.Id])
            except (msgspec.DecodeError, UnicodeDecodeError):
                self._add(parse_containers(json.loads(pending), self.keys))
        out, self._out = self._out, []
        self._ids.clear()
        self._names.clear()
        return tuple(out)


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


def parse_info(data: object) -> tuple[str, str]:
    """(data root, storage driver) from /info; "" for what the answer lacks."""
    if not isinstance(data, dict):
        raise EngineDataError(f"/info answered {type(data).__name__}, expected an object")
    return _str(data, "DockerRootDir"), _str(data, "Driver")


def _volume(raw: Mapping[str, Any]) -> VolumeRecord:
    usage = raw.get("UsageData")
    usage = usage if isinstance(usage, dict) else {}
    return VolumeRecord(
        name=_str(raw, "Name"),
        size=_count(usage, "Size"),
        ref_count=_count(usage, "RefCount"),
        driver=_str(raw, "Driver"),
        created=timestamp(raw.get("CreatedAt")),
        project=project_of(_labels(raw, PROJECT_LABELS)),
    )


def _parents(raw: Mapping[str, Any]) -> tuple[str, ...]:
    # API 1.42 replaced "Parent" by "Parents"; Docker 23 to 26 spell it " Parents" (a
    # leading space in moby's struct tag, as recorded from 26.1)
    for key in ("Parents", " Parents"):
        if isinstance(raw.get(key), list):
            return tuple(p for p in _strs(raw, key) if p)
    parent = _str(raw, "Parent")
    return (parent,) if parent else ()


def _build_cache(raw: Mapping[str, Any]) -> BuildCacheRecord:
    return BuildCacheRecord(
        id=_str(raw, "ID"),
        size=_count(raw, "Size"),
        in_use=raw.get("InUse") is True,
        shared=raw.get("Shared") is True,
        type=_str(raw, "Type"),
        created=timestamp(raw.get("CreatedAt")),
        last_used=timestamp(raw.get("LastUsedAt")),
        parents=_parents(raw),
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
        containers=tuple(
            _unique((parse_container(r) for r in containers if _str(r, "Id")), "id", "name")
        ),
        volumes=None if volumes is None else tuple(_volume(r) for r in volumes),
        build_cache=None if cache is None else tuple(_build_cache(r) for r in cache),
    )


# --- Swarm services and tasks (/services, /tasks: managers only) -----------------------------


@dataclass(frozen=True)
class ServiceRecord:
    id: str
    name: str
    mode: str  # replicated, global, replicated-job, global-job ("" when not given)
    replicas: int | None  # Spec.Mode.Replicated.Replicas
    desired_tasks: int | None  # ServiceStatus.DesiredTasks (?status=true, API 1.41+)


@dataclass(frozen=True)
class TaskRecord:
    service_id: str
    state: str  # Status.State: new, pending, ..., running, complete, failed, shutdown, ...
    desired_state: str  # DesiredState: running, shutdown, ...


_SERVICE_MODES = {
    "Replicated": "replicated",
    "Global": "global",
    "ReplicatedJob": "replicated-job",
    "GlobalJob": "global-job",
}


def _object(raw: Fields, key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def swarm_manager(info: object) -> bool:
    """/info says this engine is an active Swarm manager (it may answer /services)."""
    if not isinstance(info, dict):
        return False
    swarm = _object(info, "Swarm")
    return swarm.get("ControlAvailable") is True and swarm.get("LocalNodeState") == "active"


def parse_services(data: object) -> tuple[ServiceRecord, ...]:
    services = []
    for raw in _objects(data, "/services"):
        spec = _object(raw, "Spec")
        modes = _object(spec, "Mode")
        mode = next((_SERVICE_MODES[k] for k in modes if k in _SERVICE_MODES), "")
        status = raw.get("ServiceStatus")
        services.append(
            ServiceRecord(
                id=_str(raw, "ID"),
                name=_str(spec, "Name"),
                mode=mode,
                replicas=_count(_object(modes, "Replicated"), "Replicas"),
                desired_tasks=_count(status, "DesiredTasks") if isinstance(status, dict) else None,
            )
        )
    return tuple(_unique((s for s in services if s.id and s.name), "id", "name"))


def parse_tasks(data: object) -> tuple[TaskRecord, ...]:
    return tuple(
        TaskRecord(
            service_id=_str(raw, "ServiceID"),
            state=_str(_object(raw, "Status"), "State").lower(),
            desired_state=_str(raw, "DesiredState").lower(),
        )
        for raw in _objects(data, "/tasks")
        if _str(raw, "ServiceID")
    )
