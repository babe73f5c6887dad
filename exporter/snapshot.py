"""Immutable snapshots: the facts derived from one job's records.

Everything here is a pure function of records and the collection time, so it is
tested on recorded engine answers alone. The collector only reads these objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from itertools import compress, count
from operator import attrgetter

import msgspec

from .filesystem import FilesystemUsage
from .metrics import BUILD_CACHE_IDLE_FOR, BUILD_CACHE_STATES, CONTAINER_STATES, DISK_RESOURCES
from .priority import checkpoint, paced
from .records import (
    BuildCacheRecord,
    ContainerRecord,
    DiskUsageRecord,
    EngineInfo,
    ImageRecord,
    ServiceRecord,
    TaskRecord,
    VolumeRecord,
    project_of,
)

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


ProjectCounts = tuple[tuple[str, int], ...]  # (state, containers), states in a fixed order


def _project_counts(counts: Mapping[str, int]) -> ProjectCounts:
    return tuple(counts.items())


# a fact's ID, fetched at C speed (for passes over thousands of facts)
container_id_of = attrgetter("container_id")
image_id_of = attrgetter("image_id")


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
    # compose project or Swarm stack -> containers by state (every known state, zeros too),
    # sorted by project name; each project's counts immutable, so an unchanged one is the
    # same object in the next (patched) snapshot
    projects: Mapping[str, ProjectCounts] = field(default_factory=dict)
    container_projects: Mapping[str, str] = field(default_factory=dict)  # name -> project
    # normalized tag -> short image ID, for the containers a patch lists (patch_inventory)
    tag_to_id: Mapping[str, str] = field(default_factory=dict)


def _outdated(
    container: ContainerRecord, tag_to_id: Mapping[str, str], tagged: AbstractSet[str]
) -> bool:
    """Whether the container's image is no longer what its reference names; ``tag_to_id``
    and ``tagged`` hold short image IDs."""
    ref = container.image
    if "@" in ref:  # pinned by digest: a digest never moves
        return False
    if not ref or _is_id_ref(ref, container.image_id):
        # Created from an ID, or the engine rewrote Image to the ID after its tag moved.
        # Both leave the container on an image no tag names: it is outdated when that image
        # is untagged now, which is what the rewrite means.
        return short_id(container.image_id) not in tagged
    current = tag_to_id.get(normalize_ref(ref))
    return current != short_id(container.image_id)


class ContainerFactory:
    """ContainerFacts from records, against one image list (tags: short image IDs).

    Many containers share an image and a reference (CI hosts: thousands of exited runs of
    the same few): both derived values are computed once per distinct pair.
    """

    def __init__(self, tag_to_id: Mapping[str, str], label_keys: tuple[str, ...]) -> None:
        self.tag_to_id = tag_to_id
        self.tagged = frozenset(tag_to_id.values())
        self.label_keys = label_keys
        self._outdated: dict[tuple[str, str], bool] = {}
        self._short_ids: dict[str, str] = {}

    def __call__(self, c: ContainerRecord) -> tuple[ContainerFacts, str]:
        """The container's facts and its project ("" for none)."""
        pair = (c.image, c.image_id)
        is_outdated = self._outdated.get(pair)
        if is_outdated is None:
            is_outdated = self._outdated[pair] = _outdated(c, self.tag_to_id, self.tagged)
        image_short = self._short_ids.get(c.image_id)
        if image_short is None:
            image_short = self._short_ids[c.image_id] = short_id(c.image_id)
        labels = c.labels
        facts = ContainerFacts(
            name=c.name,
            container_id=short_id(c.id),
            image=c.image,
            image_id=image_short,
            state=c.state,
            created=c.created,
            health=c.health,
            exit_code=c.exit_code,
            image_outdated=is_outdated,
            labels=tuple([labels.get(k, "") for k in self.label_keys]),
        )
        return facts, project_of(labels)


def _image_use(
    containers: Iterable[ContainerFacts], collected_at: float
) -> tuple[Counter[str], dict[str, float]]:
    """Per short image ID: its containers, and when it was last used (the collection time
    while a container of it is active, else its newest container's creation)."""
    users: Counter[str] = Counter()
    last_used: dict[str, float] = {}
    active: set[str] = set()
    for c in paced(containers):
        image_id = c.image_id
        users[image_id] += 1
        if c.state in ACTIVE_STATES:
            active.add(image_id)
        if c.created is not None:
            last_used[image_id] = max(last_used.get(image_id, 0.0), float(c.created))
    for image_id in active:
        last_used[image_id] = collected_at
    return users, last_used


def tag_index(images: Iterable[ImageRecord]) -> dict[str, str]:
    """Each tag, normalized as ``docker images`` shows it, to its image's short ID."""
    tag_to_id: dict[str, str] = {}
    for image in images:
        for tag in image.repo_tags:
            tag_to_id[normalize_ref(tag)] = short_id(image.id)
    return tag_to_id


def build_inventory(
    engine: EngineInfo,
    images: Iterable[ImageRecord],
    containers: Iterable[ContainerRecord],
    collected_at: float,
    label_keys: tuple[str, ...] = (),
) -> InventorySnapshot:
    images = tuple(images)
    tag_to_id = tag_index(images)
    facts_of = ContainerFactory(tag_to_id, label_keys)
    return assemble_inventory(
        engine, images, [facts_of(c) for c in paced(containers)], tag_to_id, collected_at
    )


def assemble_inventory(
    engine: EngineInfo,
    images: Sequence[ImageRecord],
    containers: Iterable[tuple[ContainerFacts, str]],
    tag_to_id: Mapping[str, str],
    collected_at: float,
) -> InventorySnapshot:
    """The inventory of ``images`` and of ``containers``' facts and projects, which a
    ``ContainerFactory`` of ``tag_to_id`` (``tag_index(images)``) made."""
    by_state: dict[str, int] = dict.fromkeys(CONTAINER_STATES, 0)
    projects: dict[str, dict[str, int]] = {}
    container_projects: dict[str, str] = {}
    container_facts = []
    for facts, project in paced(containers):
        state = facts.state
        by_state[state] = by_state.get(state, 0) + 1
        if project:
            counts = projects.get(project)
            if counts is None:
                counts = projects[project] = dict.fromkeys(CONTAINER_STATES, 0)
            counts[state] = counts.get(state, 0) + 1
            container_projects[facts.name] = project
        container_facts.append(facts)
    users, last_used = _image_use(container_facts, collected_at)

    image_facts = []
    for image in paced(images):
        image_id = short_id(image.id)
        image_facts.append(
            ImageFacts(
                image_id=image_id,
                name=image_name(image.repo_tags),
                size=image.size,
                created=image.created,
                containers=users[image_id],
                tags=tuple(sorted(split_tag(t) for t in set(image.repo_tags))),
                dangling=not image.repo_tags,
                last_used=last_used.get(image_id),
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
        projects={name: _project_counts(projects[name]) for name in sorted(projects)},
        container_projects=container_projects,
        tag_to_id=tag_to_id,
    )


def patch_inventory(
    previous: InventorySnapshot,
    listed: Iterable[ContainerRecord],
    asked: AbstractSet[str],
    collected_at: float,
    label_keys: tuple[str, ...] = (),
) -> InventorySnapshot:
    """``previous`` with the containers whose short IDs are ``asked`` as ``listed`` now (an
    event named them; the ones not listed are gone), and no other change.

    What a full list at ``collected_at`` would give, when the images did not change (an
    image event asks for a full list) and no other container did: the images of the
    changed containers get their counts and last use again; other images keep the last use
    their last list saw. It costs a pass over the previous facts, not a decoding of them.
    """
    facts_of = ContainerFactory(previous.tag_to_id, label_keys)
    new: dict[str, tuple[ContainerFacts, str]] = {}
    for record in listed:
        facts, project = facts_of(record)
        if facts.container_id in asked:  # an engine that ignores the filter: only those
            new[facts.container_id] = (facts, project)
    by_state = dict(previous.containers_by_state)
    projects: dict[str, dict[str, int]] = {}  # the projects touched, counted again
    container_projects = dict(previous.container_projects)
    touched: set[str] = set()  # images of changed containers, before and after

    def count_in(c: ContainerFacts, project: str, step: int) -> None:
        by_state[c.state] = by_state.get(c.state, 0) + step
        touched.add(c.image_id)
        if project:
            counts = projects.get(project)
            if counts is None:
                before = previous.projects.get(project)
                counts = projects[project] = (
                    dict.fromkeys(CONTAINER_STATES, 0) if before is None else dict(before)
                )
            counts[c.state] = counts.get(c.state, 0) + step

    # C-speed passes find the few containers and images concerned; only those are walked
    checkpoint()
    containers = list(previous.containers)
    at = list(compress(count(), map(asked.__contains__, map(container_id_of, containers))))
    changed: list[tuple[ContainerFacts, str]] = []
    checkpoint()
    for i in reversed(at):
        c = containers[i]
        count_in(c, container_projects.pop(c.name, ""), -1)
        replacement = new.pop(c.container_id, None)
        if replacement is None:
            del containers[i]  # gone
        else:
            containers[i] = replacement[0]
            changed.append(replacement)
    added = list(new.values())  # not in the previous list: created since
    for facts, project in (*changed, *added):
        count_in(facts, project, 1)
        if project:
            container_projects[facts.name] = project
    # as a full list would: only known states always, and only projects with containers
    by_state = {k: n for k, n in by_state.items() if n or k in CONTAINER_STATES}
    all_projects = dict(previous.projects)
    for name, counts in projects.items():
        if any(counts.values()):
            all_projects[name] = _project_counts(counts)
        else:
            all_projects.pop(name, None)
    if not all(name in previous.projects for name in projects):
        all_projects = dict(sorted(all_projects.items()))  # a new project: in name order
    # the newest first, as the engine lists them
    all_containers = tuple([facts for facts, _ in added] + containers)
    using = compress(all_containers, map(touched.__contains__, map(image_id_of, all_containers)))
    users, last_used = _image_use(using, collected_at)
    images = list(previous.images)
    unused = previous.images_unused
    for i in compress(count(), map(touched.__contains__, map(image_id_of, images))):
        image = images[i]
        images[i] = msgspec.structs.replace(
            image, containers=users[image.image_id], last_used=last_used.get(image.image_id)
        )
        unused += (images[i].containers == 0) - (image.containers == 0)
    return replace(
        previous,
        collected_at=collected_at,
        images=tuple(images),
        containers=all_containers,
        images_unused=unused,
        containers_by_state=by_state,
        projects=all_projects,
        container_projects=container_projects,
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
    unused: bool = False  # no container uses it (the df's Containers is 0)


@dataclass(frozen=True)
class VolumeFacts:
    name: str
    driver: str
    size: int | None  # None where the engine did not measure it (its -1)
    containers: int | None  # RefCount; None where not counted
    created: float | None


@dataclass(frozen=True)
class VolumesSummary:
    """The volumes section of one /system/df answer."""

    dangling: int  # no container references it: 'docker volume ls -f dangling=true'
    dangling_bytes: int  # their measured sizes: what 'docker volume prune --all' frees
    project_bytes: Mapping[str, int]  # compose project or stack -> measured bytes


@dataclass(frozen=True)
class BuildCacheSummary:
    """The build cache section of one /system/df answer."""

    bytes_by_state: Mapping[str, int]  # in_use / unused / shared, each record in one
    idle_bytes: Mapping[str, int]  # idle_for label -> what 'builder prune --filter until' frees


@dataclass(frozen=True)
class DiskUsageSnapshot:
    collected_at: float
    resources: Mapping[str, ResourceUsage]  # only the resources the answer carried
    images: tuple[ImageDiskFacts, ...]
    dangling_unique: int
    unused_unique: int
    data_root_fs: FilesystemUsage | None = None  # measured where the data root is visible
    volumes: tuple[VolumeFacts, ...] = ()
    volumes_summary: VolumesSummary | None = None  # None: no volumes in the answer
    build_cache: BuildCacheSummary | None = None  # None: no build cache in the answer


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
                short_id(image.id),
                image_name(image.repo_tags),
                unique,
                image.shared_size,
                unused=image.containers == 0,
            )
        )
        if image.containers == 0:
            unused_unique += unique
            if not image.repo_tags:
                dangling_unique += unique
    volumes = df.volumes if "volumes" in wanted else None
    cache = df.build_cache if "build_cache" in wanted else None
    return DiskUsageSnapshot(
        collected_at=collected_at,
        resources={k: v for k, v in usage.items() if v is not None},
        images=tuple(images),
        dangling_unique=dangling_unique,
        unused_unique=unused_unique,
        volumes=() if volumes is None else volume_facts(volumes),
        volumes_summary=None if volumes is None else summarize_volumes(volumes),
        build_cache=None if cache is None else summarize_build_cache(cache, collected_at),
    )


# --- volumes and build cache ----------------------------------------------------------------


def volume_facts(volumes: Iterable[VolumeRecord]) -> tuple[VolumeFacts, ...]:
    """One entry per volume name (the first, should an engine list one twice)."""
    return tuple(
        VolumeFacts(v.name, v.driver, v.size, v.ref_count, v.created)
        for v in _distinct_volumes(volumes)
    )


def summarize_volumes(volumes: Iterable[VolumeRecord]) -> VolumesSummary:
    dangling = dangling_bytes = 0
    projects: dict[str, int] = {}
    for v in _distinct_volumes(volumes):
        if v.ref_count == 0:  # a RefCount the engine did not count (-1) is not "none"
            dangling += 1
            dangling_bytes += v.size or 0
        if v.project:
            projects[v.project] = projects.get(v.project, 0) + (v.size or 0)
    return VolumesSummary(dangling, dangling_bytes, projects)


def _distinct_volumes(volumes: Iterable[VolumeRecord]) -> Iterator[VolumeRecord]:
    seen: set[str] = set()
    for v in volumes:
        if v.name and v.name not in seen:
            seen.add(v.name)
            yield v


# Record types 'docker builder prune' keeps unless --all (BuildKit's cache/manager.go prune)
_KEPT_TYPES = frozenset({"internal", "frontend"})


def build_cache_idle_bytes(records: Iterable[BuildCacheRecord], now: float, idle_for: float) -> int:
    """What 'docker builder prune --filter until=<idle_for>' frees at ``now``.

    BuildKit's prune (cache/manager.go: pruneOnce, repeated until a pass frees nothing)
    removes a record when nothing references it (df: not InUse), it is not shared with an
    image (df: Shared) nor of type internal or frontend (those go only with --all), and its
    LastUsedAt is null (never used: there is no fallback to CreatedAt) or not after
    now - until. A child holds a reference to its parents, so a parent goes only once all
    its children went: an idle parent of a recently used child stays.
    """
    by_id = {r.id: r for r in records}
    cutoff = now - idle_for
    children_left = dict.fromkeys(by_id, 0)
    for r in by_id.values():
        for parent in set(r.parents):
            if parent in children_left:
                children_left[parent] += 1
    ready = [i for i, r in by_id.items() if not children_left[i] and _prunable(r, cutoff)]
    freed = 0
    while ready:  # each pass of BuildKit's loop, in one walk from the leaves up
        record = by_id[ready.pop()]
        freed += record.size or 0
        for parent in set(record.parents):
            if parent in children_left:
                children_left[parent] -= 1
                if not children_left[parent] and _prunable(by_id[parent], cutoff):
                    ready.append(parent)
    return freed


def _prunable(record: BuildCacheRecord, cutoff: float) -> bool:
    if record.in_use or record.shared or record.type in _KEPT_TYPES:
        return False
    return record.last_used is None or record.last_used <= cutoff


def summarize_build_cache(records: Iterable[BuildCacheRecord], now: float) -> BuildCacheSummary:
    records = tuple(records)
    states = dict.fromkeys(BUILD_CACHE_STATES, 0)
    for r in records:
        state = "shared" if r.shared else "in_use" if r.in_use else "unused"
        states[state] += r.size or 0
    idle = {
        label: build_cache_idle_bytes(records, now, seconds)
        for label, seconds in BUILD_CACHE_IDLE_FOR
    }
    return BuildCacheSummary(states, idle)


@dataclass(frozen=True)
class ContainerSize:
    name: str
    rw: int | None
    root_fs: int | None


@dataclass(frozen=True)
class ContainerSizesSnapshot:
    collected_at: float
    containers: tuple[ContainerSize, ...]


def _size_rw(c: ContainerRecord) -> int | None:
    """SizeRw of a ``size=1`` answer: Docker leaves it out when it is 0 (omitempty; seen on
    28.5's classic store) while it sends SizeRootFs, so a container with SizeRootFs and no
    SizeRw has a real 0; without either the engine gave no sizes (unknown)."""
    if c.size_rw is None and c.size_root_fs is not None:
        return 0
    return c.size_rw


def build_container_sizes(
    containers: Iterable[ContainerRecord], collected_at: float
) -> ContainerSizesSnapshot:
    return ContainerSizesSnapshot(
        collected_at,
        tuple(ContainerSize(c.name, _size_rw(c), c.size_root_fs) for c in containers),
    )


def project_rw_bytes(
    sizes: ContainerSizesSnapshot, inventory: InventorySnapshot | None
) -> dict[str, int]:
    """Writable-layer bytes per compose project or stack, of the containers the newest
    inventory lists (by name); {} without an inventory.

    A project has a value once one of its containers is in the sizes answer. Docker leaves
    SizeRw out when it is 0 (omitempty, even with size=1), so a missing one adds nothing.
    """
    if inventory is None:
        return {}
    projects = inventory.container_projects
    out: dict[str, int] = {}
    for c in sizes.containers:
        project = projects.get(c.name)
        if project:
            out[project] = out.get(project, 0) + (c.rw or 0)
    return out


# --- Swarm services -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    mode: str
    desired: int | None  # None where neither the engine nor the spec says
    tasks: Mapping[str, int]  # current task state -> tasks; "running" always present


@dataclass(frozen=True)
class SwarmSnapshot:
    collected_at: float
    manager: bool  # False: a worker or no Swarm; nothing was asked, nothing is exported
    services: tuple[ServiceFacts, ...] = ()


def build_swarm(
    services: Iterable[ServiceRecord], tasks: Iterable[TaskRecord], collected_at: float
) -> SwarmSnapshot:
    """Desired and current tasks per service, from one /services and one /tasks answer."""
    by_service: dict[str, dict[str, int]] = {}
    not_shut_down: Counter[str] = Counter()
    for t in tasks:
        states = by_service.setdefault(t.service_id, {"running": 0})
        states[t.state] = states.get(t.state, 0) + 1
        if t.desired_state != "shutdown":
            not_shut_down[t.service_id] += 1
    facts = []
    for s in sorted(services, key=lambda s: s.name):
        desired = s.desired_tasks
        if desired is None and s.mode == "replicated":
            desired = s.replicas
        elif desired is None and s.mode == "global":
            # as the engine computes DesiredTasks: its tasks not meant to shut down
            desired = not_shut_down[s.id]
        tasks_of = by_service.get(s.id, {"running": 0})
        facts.append(ServiceFacts(s.name, s.mode, desired, dict(sorted(tasks_of.items()))))
    return SwarmSnapshot(collected_at, True, tuple(facts))
