"""The collector: the series of the current view, fresh on every call.

``plan(view)`` lists the exposition's metric families in order. Families filled object by
object (one image, one container) say so: ``ObjectFamilies`` gives the objects and a pure
function from one object to its rows in each family. That is what lets the exposition
reuse the rendered lines of an unchanged object. ``collect()`` turns the same plan into
prometheus_client families, so the library's own rendering is the reference output.

No family outlives a call, so an image or container that left the engine is simply not
yielded again. A job whose last run failed has no snapshot, so its per-object series
are dropped rather than served stale.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from typing import Any, Optional, Union

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metrics as m
from .events import (
    CONTAINER_ACTIONS,
    DIE_INSPECT_RESULTS,
    IMAGE_ACTIONS,
    OTHER,
    TYPES,
    ContainerEvents,
    EventsSnapshot,
)
from .metrics import MetricSpec
from .snapshot import (
    ContainerFacts,
    ContainerSize,
    ContainerSizesSnapshot,
    DiskUsageSnapshot,
    ImageDiskFacts,
    ImageFacts,
    InventorySnapshot,
    SwarmSnapshot,
    VolumeFacts,
    container_id_of,
    image_id_of,
    project_rw_bytes,
)
from .state import State, View
from .updates import UpdatesSnapshot

Family = Union[GaugeMetricFamily, CounterMetricFamily]  # a run-time union: Python 3.9
Row = tuple[tuple[str, ...], float]  # label values (in the family's label order), value
Rows = tuple[Row, ...]


@dataclass(frozen=True)
class Head:
    """A metric family's identity: its spec and label names."""

    spec: MetricSpec
    labels: tuple[str, ...]

    @classmethod
    def of(cls, spec: MetricSpec) -> Head:
        return cls(spec, spec.labels)


@dataclass(frozen=True)
class Families:
    """Families whose rows are given outright (totals, job status: a handful of rows)."""

    heads: tuple[Head, ...]
    rows: tuple[Rows, ...]  # rows[i] belong to heads[i]


@dataclass(frozen=True)
class ObjectFamilies:
    """Families filled object by object: ``rows_of(obj)[i]`` are obj's rows in ``heads[i]``.

    ``rows_of`` is a pure function of the (immutable, hashable) object, so the rows of an
    object equal to one seen before are the rows seen before. ``key_of`` names an object
    for as long as it exists (an ID, a name: it does not change with the object's facts).
    """

    key: str  # names the kind of object, for caches
    heads: tuple[Head, ...]
    objects: Sequence[Hashable]
    rows_of: Callable[[Any], tuple[Rows, ...]]
    key_of: Callable[[Any], Hashable]


Part = Union[Families, ObjectFamilies]


def family(spec: MetricSpec, labels: Sequence[str] | None = None) -> Family:
    names = list(spec.labels if labels is None else labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.doc, labels=names)
    return GaugeMetricFamily(spec.name, spec.doc, labels=names)


def _single(spec: MetricSpec, value: float) -> Families:
    return Families((Head.of(spec),), ((((), value),),))


# --- rows of one object ----------------------------------------------------------------------

IMAGE_HEADS = tuple(
    Head.of(s)
    for s in (
        m.IMAGE_SIZE,
        m.IMAGE_CREATED,
        m.IMAGE_CONTAINERS,
        m.IMAGE_TAG_INFO,
        m.IMAGE_LAST_USED,
    )
)


def image_rows(image: ImageFacts) -> tuple[Rows, ...]:
    key = (image.image_id, image.name)
    return (
        () if image.size is None else ((key, float(image.size)),),
        () if image.created is None else ((key, float(image.created)),),
        ((key, float(image.containers)),),
        tuple(((image.image_id, repository, tag), 1.0) for repository, tag in image.tags),
        () if image.last_used is None else ((key, image.last_used),),
    )


PROJECT_HEADS = (Head.of(m.PROJECT_CONTAINERS),)


# what names an object (ObjectFamilies.key_of), fetched in C
_name = attrgetter("name")
_first = itemgetter(0)


def project_rows(project: tuple[str, tuple[tuple[str, int], ...]]) -> tuple[Rows, ...]:
    name, counts = project
    return (tuple(((name, state), float(n)) for state, n in counts),)


def container_heads(label_names: tuple[str, ...]) -> tuple[Head, ...]:
    heads = tuple(
        Head.of(s)
        for s in (
            m.CONTAINER_INFO,
            m.CONTAINER_STATE,
            m.CONTAINER_CREATED,
            m.CONTAINER_HEALTH,
            m.CONTAINER_EXIT_CODE,
            m.CONTAINER_IMAGE_OUTDATED,
        )
    )
    if label_names:
        heads += (Head(m.CONTAINER_LABELS, ("name", *label_names)),)
    return heads


def container_rows(c: ContainerFacts, with_labels: bool) -> tuple[Rows, ...]:
    name = (c.name,)
    rows: tuple[Rows, ...] = (
        (((c.name, c.container_id, c.image, c.image_id), 1.0),),
        (((c.name, c.state), 1.0),),
        () if c.created is None else ((name, float(c.created)),),
        () if c.health is None else (((c.name, c.health), 1.0),),
        () if c.exit_code is None else ((name, float(c.exit_code)),),
        ((name, 1.0 if c.image_outdated else 0.0),),
    )
    if with_labels:
        rows += ((((c.name, *c.labels), 1.0),),)
    return rows


IMAGE_DISK_HEADS = (Head.of(m.IMAGE_UNIQUE_SIZE), Head.of(m.IMAGE_SHARED_SIZE))


def image_disk_rows(image: ImageDiskFacts) -> tuple[Rows, ...]:
    key = (image.image_id, image.name)
    return ((key, float(image.unique)),), ((key, float(image.shared)),)


CONTAINER_SIZE_HEADS = (Head.of(m.CONTAINER_RW_SIZE), Head.of(m.CONTAINER_ROOTFS_SIZE))


def container_size_rows(c: ContainerSize) -> tuple[Rows, ...]:
    return (
        () if c.rw is None else (((c.name,), float(c.rw)),),
        () if c.root_fs is None else (((c.name,), float(c.root_fs)),),
    )


VOLUME_HEADS = (Head.of(m.VOLUME_SIZE), Head.of(m.VOLUME_CONTAINERS), Head.of(m.VOLUME_CREATED))


def volume_rows(v: VolumeFacts) -> tuple[Rows, ...]:
    name = (v.name,)
    return (
        () if v.size is None else (((v.name, v.driver), float(v.size)),),
        () if v.containers is None else ((name, float(v.containers)),),
        () if v.created is None else ((name, v.created),),
    )


def _by_key(spec: MetricSpec, values: Mapping[str, int]) -> Families:
    """One series per key (a project, a state), in sorted order."""
    return Families((Head.of(spec),), (tuple(((k,), float(values[k])) for k in sorted(values)),))


def current_image_disk(
    disk_usage: DiskUsageSnapshot, inventory: InventorySnapshot | None
) -> tuple[ImageDiskFacts, ...]:
    """The df's per-image facts for the images the newest inventory lists, named as it names them.

    An image removed since the slower df run vanishes with the next inventory, and the
    series of both jobs share their key (Podman's /system/df lists bare tags such as "1"
    instead of repo:tag). Without an inventory nothing is current.
    """
    if inventory is None:
        return ()
    names = {i.image_id: i.name for i in inventory.images}
    return tuple(
        replace(image, name=names[image.image_id])
        for image in disk_usage.images
        if image.image_id in names
    )


def image_disk_totals(
    disk_usage: DiskUsageSnapshot, inventory: InventorySnapshot | None
) -> tuple[int, int]:
    """(dangling, unused) unique bytes of the images the newest inventory lists, dangling as
    the list says (the engine's own ``dangling=true``), so they add up from the per-image
    series. Podman's /system/df also lists a build's intermediate images (``<none>``, the
    parents of tagged ones) that its list and ``podman images -f dangling=true`` leave out.
    Without an inventory, the df's own figures."""
    if inventory is None:
        return disk_usage.dangling_unique, disk_usage.unused_unique
    dangling_ids = {i.image_id for i in inventory.images if i.dangling}
    dangling = unused = 0
    for image in current_image_disk(disk_usage, inventory):
        if image.unused:
            unused += image.unique
            if image.image_id in dangling_ids:
                dangling += image.unique
    return dangling, unused


def current_container_sizes(
    sizes: ContainerSizesSnapshot, inventory: InventorySnapshot | None
) -> tuple[ContainerSize, ...]:
    """The sizes of the containers the newest inventory lists (by name)."""
    if inventory is None:
        return ()
    names = {c.name for c in inventory.containers}
    return tuple(c for c in sizes.containers if c.name in names)


def _swarm(snap: SwarmSnapshot) -> Families:
    return Families(
        (Head.of(m.SWARM_DESIRED), Head.of(m.SWARM_TASKS)),
        (
            tuple(
                ((s.name, s.mode), float(s.desired)) for s in snap.services if s.desired is not None
            ),
            tuple(
                ((s.name, state), float(n)) for s in snap.services for state, n in s.tasks.items()
            ),
        ),
    )


CONTAINER_EVENT_HEADS = tuple(
    Head.of(s) for s in (m.CONTAINER_RESTARTS, m.CONTAINER_OOM_KILLS, m.CONTAINER_LAST_EXIT_CODE)
)
# Every (type, action) docker_events_total may carry, present from the start at 0
EVENT_KINDS = tuple(
    [("container", a) for a in CONTAINER_ACTIONS]
    + [("image", a) for a in IMAGE_ACTIONS]
    + [(t, OTHER) for t in TYPES]
)


# A listed container's short ID, its facts, and what the stream saw of it (None: nothing yet)
ContainerSeen = tuple[str, ContainerFacts, Optional[ContainerEvents]]


def container_event_rows(seen_one: ContainerSeen) -> tuple[Rows, ...]:
    """A container's event counts (0 where the stream saw nothing of it); its last exit
    code is the stream's, else the list's."""
    _, c, seen = seen_one
    name = (c.name,)
    if seen is None:
        restarts = oom_kills = 0
        exit_code = c.exit_code
    else:
        restarts, oom_kills = seen.restarts, seen.oom_kills
        exit_code = c.exit_code if seen.last_exit_code is None else seen.last_exit_code
    return (
        ((name, float(restarts)),),
        ((name, float(oom_kills)),),
        () if exit_code is None else ((name, float(exit_code)),),
    )


def current_container_events(
    events: EventsSnapshot, inventory: InventorySnapshot | None
) -> tuple[ContainerSeen, ...]:
    """The containers the newest inventory lists, each with what the stream saw of it: a
    removed container's series go with it, as every per-object series does."""
    if inventory is None:
        return ()
    containers = inventory.containers
    ids = list(map(container_id_of, containers))
    return tuple(zip(ids, containers, map(events.containers.get, ids)))


# --- the plan ----------------------------------------------------------------------------------


class DockerCollector(Collector):
    def __init__(
        self,
        state: State,
        per_image: bool = True,
        per_container: bool = True,
        label_names: tuple[str, ...] = (),
        alert_thresholds: tuple[tuple[str, float], ...] = (),
        per_volume: bool = True,
    ) -> None:
        self.state = state
        self.per_volume = per_volume
        self.per_image = per_image
        self.per_container = per_container
        self.label_names = label_names
        self.alert_thresholds = alert_thresholds
        self._container_heads = container_heads(label_names)
        with_labels = bool(label_names)
        self._container_rows: Callable[[ContainerFacts], tuple[Rows, ...]] = lambda c: (
            container_rows(c, with_labels)
        )

    def collect(self) -> Iterator[Family]:
        for part in self.plan(self.state.view()):
            fams = [family(h.spec, h.labels) for h in part.heads]
            if isinstance(part, Families):
                groups: Iterator[tuple[Rows, ...]] = iter((part.rows,))
            else:
                groups = (part.rows_of(obj) for obj in part.objects)
            for rows in groups:
                for fam, fam_rows in zip(fams, rows):
                    for labels, value in fam_rows:
                        fam.add_metric(list(labels), value)
            yield from fams

    def plan(self, view: View) -> list[Part]:
        """The families of ``view``, in exposition order."""
        parts: list[Part] = [self._exporter(view)]
        if self.alert_thresholds:
            parts.append(
                Families(
                    (Head.of(m.ALERT_THRESHOLD),),
                    (tuple(((name,), value) for name, value in self.alert_thresholds),),
                )
            )
        if view.inventory is not None:
            parts += self._inventory(view.inventory)
        if view.disk_usage is not None:
            parts += self._disk_usage(view.disk_usage, view.inventory)
        if view.container_sizes is not None and self.per_container:
            parts.append(self._container_sizes(view.container_sizes, view.inventory))
        if view.container_sizes is not None:  # per project: also without per-container series
            rw = project_rw_bytes(view.container_sizes, view.inventory)
            parts.append(_by_key(m.PROJECT_RW_BYTES, rw))
        if view.swarm is not None and view.swarm.manager:
            parts.append(_swarm(view.swarm))
        if view.updates is not None:
            parts.append(self._updates(view.updates))
        if view.events is not None:
            parts += self._events(view.events, view.inventory)
        return parts

    def _events(self, snap: EventsSnapshot, inventory: InventorySnapshot | None) -> list[Part]:
        last: Rows = () if snap.last_timestamp is None else (((), snap.last_timestamp),)
        parts: list[Part] = [
            Families(
                tuple(
                    Head.of(s)
                    for s in (
                        m.EVENTS_STREAM_UP,
                        m.EVENTS_RECONNECTS,
                        m.EVENTS_REPLAY_GAPS,
                        m.EVENTS_LAST_TIMESTAMP,
                        m.EVENTS_TOTAL,
                        m.EVENTS_DIE_INSPECTS,
                    )
                ),
                (
                    (((), 1.0 if snap.up else 0.0),),
                    (((), float(snap.reconnects)),),
                    (((), float(snap.replay_gaps)),),
                    last,
                    tuple((kind, float(snap.by_action.get(kind, 0))) for kind in EVENT_KINDS),
                    tuple(((r,), float(snap.die_inspects.get(r, 0))) for r in DIE_INSPECT_RESULTS),
                ),
            )
        ]
        if self.per_container:
            parts.append(
                ObjectFamilies(
                    "container_events",
                    CONTAINER_EVENT_HEADS,
                    current_container_events(snap, inventory),
                    container_event_rows,
                    _first,
                )
            )
        return parts

    def _updates(self, snap: UpdatesSnapshot) -> Families:
        """The registry job's families: per container and image (as the per-object flags
        allow), and per registry."""
        containers: Rows = ()
        if self.per_container:
            containers = tuple(
                ((c.name, status), 1.0 if status == c.status else 0.0)
                for c in snap.containers
                for status in m.UPDATE_STATUSES
            )
        images: Rows = ()
        if self.per_image:
            images = tuple(((i.image_id, i.tag), 1.0 if i.available else 0.0) for i in snap.images)
        regs = snap.registries
        return Families(
            tuple(
                Head.of(s)
                for s in (
                    m.IMAGE_UPDATE_AVAILABLE,
                    m.CONTAINER_UPDATE_STATUS,
                    m.REGISTRY_CHECK_SUCCESS,
                    m.REGISTRY_REQUESTS,
                    m.REGISTRY_LAST_CHECK,
                    m.REGISTRY_RATELIMIT_REMAINING,
                )
            ),
            (
                images,
                containers,
                tuple(((r.registry,), 1.0 if r.success else 0.0) for r in regs),
                tuple(
                    ((r.registry, method, code), float(n))
                    for r in regs
                    for (method, code), n in sorted(r.stats.requests.items())
                ),
                tuple(
                    ((r.registry,), r.stats.last_check)
                    for r in regs
                    if r.stats.last_check is not None
                ),
                tuple(
                    ((r.registry,), float(r.stats.ratelimit_remaining))
                    for r in regs
                    if r.stats.ratelimit_remaining is not None
                ),
            ),
        )

    def _exporter(self, view: View) -> Families:
        up: Rows = (((), 1.0 if view.engine_up else 0.0),)
        jobs = view.jobs.items()
        return Families(
            tuple(
                Head.of(s)
                for s in (
                    m.UP,
                    m.COLLECTION_SUCCESS,
                    m.COLLECTION_DURATION,
                    m.LAST_SUCCESS,
                    m.COLLECTION_ERRORS,
                    m.JOB_SKIPPED,
                )
            ),
            (
                up,
                tuple(((job,), 1.0 if s.success else 0.0) for job, s in jobs),
                tuple(((job,), s.duration) for job, s in jobs if s.duration is not None),
                tuple(((job,), s.last_success) for job, s in jobs if s.last_success is not None),
                tuple(((job,), float(s.failures)) for job, s in jobs),
                tuple(((job,), float(s.skipped)) for job, s in jobs),
            ),
        )

    def _inventory(self, snap: InventorySnapshot) -> list[Part]:
        e = snap.engine
        engine = (e.version, e.api_version, e.os, e.arch, e.kernel_version, e.product)
        parts: list[Part] = [
            Families((Head.of(m.ENGINE_INFO),), (((engine, 1.0),),)),
            _single(m.IMAGES, float(snap.images_total)),
            _single(m.IMAGES_DANGLING, float(snap.images_dangling)),
            _single(m.IMAGES_UNUSED, float(snap.images_unused)),
            Families(
                (Head.of(m.CONTAINERS),),
                (tuple(((s,), float(n)) for s, n in snap.containers_by_state.items()),),
            ),
        ]
        # a project at a time, so that the lines of unchanged ones are reused (a CI host has
        # thousands, and events change a few)
        parts.append(
            ObjectFamilies(
                "projects",
                PROJECT_HEADS,
                tuple(snap.projects.items()),  # sorted by name, counts immutable
                project_rows,
                _first,
            )
        )
        if e.data_root:  # known from /info
            storage = ((e.data_root, e.storage_driver), 1.0)
            parts.insert(1, Families((Head.of(m.ENGINE_STORAGE_INFO),), ((storage,),)))
        if self.per_image:
            parts.append(
                ObjectFamilies("images", IMAGE_HEADS, snap.images, image_rows, image_id_of)
            )
        if self.per_container:
            parts.append(
                ObjectFamilies(
                    "containers",
                    self._container_heads,
                    snap.containers,
                    self._container_rows,
                    container_id_of,
                )
            )
        return parts

    def _disk_usage(
        self, snap: DiskUsageSnapshot, inventory: InventorySnapshot | None
    ) -> list[Part]:
        resources = snap.resources.items()
        parts: list[Part] = [
            Families(
                tuple(
                    Head.of(s)
                    for s in (m.DISK_USAGE_BYTES, m.DISK_RECLAIMABLE, m.DISK_OBJECTS, m.DISK_ACTIVE)
                ),
                (
                    tuple(((r,), float(u.size)) for r, u in resources),
                    tuple(((r,), float(u.reclaimable)) for r, u in resources),
                    tuple(((r,), float(u.total)) for r, u in resources),
                    tuple(((r,), float(u.active)) for r, u in resources),
                ),
            )
        ]
        if snap.data_root_fs is not None:
            parts.append(_single(m.DATA_ROOT_FS_SIZE, float(snap.data_root_fs.size)))
            parts.append(_single(m.DATA_ROOT_FS_AVAIL, float(snap.data_root_fs.avail)))
        volumes = snap.volumes_summary
        if volumes is not None:
            parts.append(_single(m.VOLUMES_DANGLING, float(volumes.dangling)))
            parts.append(_single(m.VOLUMES_DANGLING_BYTES, float(volumes.dangling_bytes)))
            parts.append(_by_key(m.PROJECT_VOLUME_BYTES, volumes.project_bytes))
            if self.per_volume:
                parts.append(
                    ObjectFamilies("volumes", VOLUME_HEADS, snap.volumes, volume_rows, _name)
                )
        cache = snap.build_cache
        if cache is not None:
            parts.append(_by_key(m.BUILD_CACHE_BYTES, cache.bytes_by_state))
            idle = cache.idle_bytes
            parts.append(
                Families(
                    (Head.of(m.BUILD_CACHE_IDLE),),
                    (tuple(((label,), float(idle[label])) for label, _ in m.BUILD_CACHE_IDLE_FOR),),
                )
            )
        if "images" in snap.resources:
            dangling, unused = image_disk_totals(snap, inventory)
            parts.append(_single(m.IMAGES_DANGLING_UNIQUE, float(dangling)))
            parts.append(_single(m.IMAGES_UNUSED_UNIQUE, float(unused)))
            if self.per_image:
                parts.append(
                    ObjectFamilies(
                        "image_disk",
                        IMAGE_DISK_HEADS,
                        current_image_disk(snap, inventory),
                        image_disk_rows,
                        image_id_of,
                    )
                )
        return parts

    def _container_sizes(
        self, snap: ContainerSizesSnapshot, inventory: InventorySnapshot | None
    ) -> ObjectFamilies:
        sizes = current_container_sizes(snap, inventory)
        return ObjectFamilies(
            "container_sizes",
            CONTAINER_SIZE_HEADS,
            sizes,
            container_size_rows,
            _name,
        )
