"""Immutable snapshots: the facts derived from one job's records.

Everything here is a pure function of records and the collection time, so it is
tested on recorded engine answers alone. The collector only reads these objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

import msgspec

from .filesystem import FilesystemUsage
from .metrics import CONTAINER_STATES, DISK_RESOURCES
from .records import ContainerRecord, DiskUsageRecord, EngineInfo, ImageRecord

ACTIVE_STATES = frozenset({"running", "paused", "restarting"})
_HEX = frozenset("0123456789abcdef")


def short_id(full_id: str) -> str:
    """The 12 hex characters the docker CLI shows."""
    return full_id.split(":", 1)[-1][:12]


def image_name(repo_tags: Iterable[str]) -> str:
    tags = sorted(repo_tags)
    return tags[0] if tags else "<none>:<none>"


def split_tag(ref: str) -> tuple[str, str]:
    """'repo:tag' -> ('repo', 'tag'); the tag is after the last ':' that follows the last '/'."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def normalize_ref(ref: str) -> str:
    """A tag reference in the form 'docker images' shows it: default tag and registry dropped."""
    repo, tag = split_tag(ref)
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
            break
    return f"{repo}:{tag}"


def _is_id_ref(ref: str, image_id: str) -> bool:
    """True when the container's Image field is its image's ID rather than a tag."""
    bare = ref.removeprefix("sha256:")
    return bool(bare) and set(bare) <= _HEX and image_id.removeprefix("sha256:").startswith(bare)


# frozen structs the GC does not track, as records are (see records.py)
class ImageFacts(msgspec.Struct, frozen=True, gc=False):
    image_id: str  # short
    name: str
    size: int | None
    created: int | None
    containers: int
    tags: tuple[tuple[str, str], ...]  # (repository, tag), sorted
    dangling: bool
    last_used: float | None


class ContainerFacts(msgspec.Struct, frozen=True, gc=False):
    name: str
    container_id: str  # short
    image: str
    image_id: str  # short
    state: str
    created: int | None
    health: str | None
    exit_code: int | None
    image_outdated: bool
    labels: tuple[str, ...]  # values of the allowlisted keys, in allowlist order


@dataclass(frozen=True)
class InventorySnapshot:
    collected_at: float
    engine: EngineInfo
    images: tuple[ImageFacts, ...]
    containers: tuple[ContainerFacts, ...]
    images_total: int
    images_dangling: int
    images_unused: int
    containers_by_state: Mapping[str, int]


def _outdated(
    container: ContainerRecord, tag_to_id: Mapping[str, str], tagged: AbstractSet[str]
) -> bool:
    ref = container.image
    if "@" in ref:  # pinned by digest: a digest never moves
        return False
    if not ref or _is_id_ref(ref, container.image_id):
        # Created from an ID, or the engine rewrote Image to the ID after its tag moved.
        # Both leave the container on an image no tag names: it is outdated when that image
        # is untagged now, which is what the rewrite means.
        return container.image_id not in tagged
    current = tag_to_id.get(normalize_ref(ref))
    return current != container.image_id


def build_inventory(
    engine: EngineInfo,
    images: Iterable[ImageRecord],
    containers: Iterable[ContainerRecord],
    collected_at: float,
    label_keys: tuple[str, ...] = (),
) -> InventorySnapshot:
    images = tuple(images)
    containers = tuple(containers)
    tag_to_id: dict[str, str] = {}
    for image in images:
        for tag in image.repo_tags:
            tag_to_id[normalize_ref(tag)] = image.id

    tagged = frozenset(tag_to_id.values())
    users: Counter[str] = Counter(c.image_id for c in containers)
    last_used: dict[str, float] = {}
    running_images: set[str] = set()
    for c in containers:
        if c.state in ACTIVE_STATES:
            running_images.add(c.image_id)
        if c.created is not None:
            last_used[c.image_id] = max(last_used.get(c.image_id, 0.0), float(c.created))
    for image_id in running_images:
        last_used[image_id] = collected_at

    image_facts = []
    for image in images:
        image_facts.append(
            ImageFacts(
                image_id=short_id(image.id),
                name=image_name(image.repo_tags),
                size=image.size,
                created=image.created,
                containers=users[image.id],
                tags=tuple(sorted(split_tag(t) for t in set(image.repo_tags))),
                dangling=not image.repo_tags,
                last_used=last_used.get(image.id),
            )
        )

    by_state: dict[str, int] = dict.fromkeys(CONTAINER_STATES, 0)
    container_facts = []
    # Many containers share an image and a reference (CI hosts: thousands of exited runs
    # of the same few): both derived values are computed once per distinct pair.
    outdated: dict[tuple[str, str], bool] = {}
    short_ids: dict[str, str] = {}
    for c in containers:
        by_state[c.state] = by_state.get(c.state, 0) + 1
        pair = (c.image, c.image_id)
        is_outdated = outdated.get(pair)
        if is_outdated is None:
            is_outdated = outdated[pair] = _outdated(c, tag_to_id, tagged)
        image_short = short_ids.get(c.image_id)
        if image_short is None:
            image_short = short_ids[c.image_id] = short_id(c.image_id)
        labels = c.labels
        container_facts.append(
            ContainerFacts(
                name=c.name,
                container_id=short_id(c.id),
                image=c.image,
                image_id=image_short,
                state=c.state,
                created=c.created,
                health=c.health,
                exit_code=c.exit_code,
                image_outdated=is_outdated,
                labels=tuple([labels.get(k, "") for k in label_keys]),
            )
        )

    return InventorySnapshot(
        collected_at=collected_at,
        engine=engine,
        images=tuple(image_facts),
        containers=tuple(container_facts),
        images_total=len(images),
        images_dangling=sum(1 for i in image_facts if i.dangling),
        images_unused=sum(1 for i in image_facts if i.containers == 0),
        containers_by_state=by_state,
    )


# --- disk usage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceUsage:
    size: int
    reclaimable: int
    total: int
    active: int


@dataclass(frozen=True)
class ImageDiskFacts:
    image_id: str
    name: str
    unique: int
    shared: int


@dataclass(frozen=True)
class DiskUsageSnapshot:
    collected_at: float
    resources: Mapping[str, ResourceUsage]  # only the resources the answer carried
    images: tuple[ImageDiskFacts, ...]
    dangling_unique: int
    unused_unique: int
    data_root_fs: FilesystemUsage | None = None  # measured where the data root is visible


def _image_usage(df: DiskUsageRecord) -> ResourceUsage | None:
    """The CLI's images row (cli/command/formatter/disk_usage.go)."""
    if df.layers_size is None:
        return None
    if df.layers_size == 0 and any(i.size for i in df.images):
        return None  # Podman answers LayersSize 0 beside non-empty images: not computed
    used = 0
    for image in df.images:
        # The CLI tests Containers != 0, so an uncounted image (-1, here None) counts as used.
        if image.containers == 0:
            continue
        if image.size is None or image.shared_size is None:
            continue  # the CLI skips -1 sizes
        used += image.size - image.shared_size
    active = sum(1 for i in df.images if i.containers)
    reclaimable = df.layers_size - used if df.layers_size else 0
    return ResourceUsage(df.layers_size, max(reclaimable, 0), len(df.images), active)


def _container_usage(df: DiskUsageRecord) -> ResourceUsage:
    size = reclaimable = active = 0
    for c in df.containers:
        rw = c.size_rw or 0
        size += rw
        if any(s in c.state for s in ACTIVE_STATES):
            active += 1
        else:
            reclaimable += rw
    return ResourceUsage(size, reclaimable, len(df.containers), active)


def _volume_usage(df: DiskUsageRecord) -> ResourceUsage | None:
    if df.volumes is None:
        return None
    size = reclaimable = active = 0
    for v in df.volumes:
        if v.size is not None:
            size += v.size
        if v.ref_count:
            active += 1
        elif v.size is not None and v.ref_count == 0:
            reclaimable += v.size
    return ResourceUsage(size, reclaimable, len(df.volumes), active)


def _build_cache_usage(df: DiskUsageRecord) -> ResourceUsage | None:
    if df.build_cache is None:
        return None
    size = reclaimable = active = 0
    for b in df.build_cache:
        if b.in_use:
            active += 1
        if not b.shared:
            size += b.size or 0
            if not b.in_use:
                reclaimable += b.size or 0
    return ResourceUsage(size, reclaimable, len(df.build_cache), active)


def _distinct_images(images: Iterable[ImageRecord]) -> tuple[ImageRecord, ...]:
    """One record per image ID (Podman's /system/df repeats an image once per tag)."""
    seen: dict[str, ImageRecord] = {}
    for image in images:
        first = seen.get(image.id)
        if first is None:
            seen[image.id] = image
        else:
            tags = tuple(dict.fromkeys(first.repo_tags + image.repo_tags))
            seen[image.id] = msgspec.structs.replace(first, repo_tags=tags)
    return tuple(seen.values())


def build_disk_usage(
    df: DiskUsageRecord, collected_at: float, resources: Iterable[str] = DISK_RESOURCES
) -> DiskUsageSnapshot:
    df = replace(df, images=_distinct_images(df.images))
    wanted = set(resources)
    usage: dict[str, ResourceUsage | None] = {
        "images": _image_usage(df) if "images" in wanted else None,
        "containers": _container_usage(df) if "containers" in wanted else None,
        "volumes": _volume_usage(df) if "volumes" in wanted else None,
        "build_cache": _build_cache_usage(df) if "build_cache" in wanted else None,
    }
    images = []
    dangling_unique = unused_unique = 0
    for image in df.images:
        if image.size is None or image.shared_size is None:
            continue  # no sentinel ever becomes a byte count
        unique = image.size - image.shared_size
        images.append(
            ImageDiskFacts(
                short_id(image.id), image_name(image.repo_tags), unique, image.shared_size
            )
        )
        if image.containers == 0:
            unused_unique += unique
            if not image.repo_tags:
                dangling_unique += unique
    return DiskUsageSnapshot(
        collected_at=collected_at,
        resources={k: v for k, v in usage.items() if v is not None},
        images=tuple(images),
        dangling_unique=dangling_unique,
        unused_unique=unused_unique,
    )


@dataclass(frozen=True)
class ContainerSize:
    name: str
    rw: int | None
    root_fs: int | None


@dataclass(frozen=True)
class ContainerSizesSnapshot:
    collected_at: float
    containers: tuple[ContainerSize, ...]


def build_container_sizes(
    containers: Iterable[ContainerRecord], collected_at: float
) -> ContainerSizesSnapshot:
    return ContainerSizesSnapshot(
        collected_at,
        tuple(ContainerSize(c.name, c.size_rw, c.size_root_fs) for c in containers),
    )
