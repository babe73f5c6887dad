"""The custom collector: fresh metric families from the current view on every call.

No family outlives a call, so an image or container that left the engine is simply not
yielded again. A job whose last run failed has no snapshot, so its per-object series
are dropped rather than served stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metrics as m
from .metrics import MetricSpec
from .snapshot import (
    ContainerSize,
    ContainerSizesSnapshot,
    DiskUsageSnapshot,
    ImageDiskFacts,
    InventorySnapshot,
)
from .state import State, View

Family = GaugeMetricFamily | CounterMetricFamily


def family(spec: MetricSpec, labels: Iterable[str] | None = None) -> Family:
    names = list(spec.labels if labels is None else labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.doc, labels=names)
    return GaugeMetricFamily(spec.name, spec.doc, labels=names)


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


def current_container_sizes(
    sizes: ContainerSizesSnapshot, inventory: InventorySnapshot | None
) -> tuple[ContainerSize, ...]:
    """The sizes of the containers the newest inventory lists (by name)."""
    if inventory is None:
        return ()
    names = {c.name for c in inventory.containers}
    return tuple(c for c in sizes.containers if c.name in names)


class DockerCollector(Collector):
    def __init__(
        self,
        state: State,
        per_image: bool = True,
        per_container: bool = True,
        label_names: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self.per_image = per_image
        self.per_container = per_container
        self.label_names = label_names

    def collect(self) -> Iterator[Family]:
        view = self.state.view()
        yield from self._exporter(view)
        if view.inventory is not None:
            yield from self._inventory(view.inventory)
        if view.disk_usage is not None:
            yield from self._disk_usage(view.disk_usage, view.inventory)
        if view.container_sizes is not None and self.per_container:
            yield from self._container_sizes(view.container_sizes, view.inventory)

    def _exporter(self, view: View) -> Iterator[Family]:
        up = family(m.UP)
        up.add_metric([], 1.0 if view.engine_up else 0.0)
        yield up
        success, duration, last = (
            family(m.COLLECTION_SUCCESS),
            family(m.COLLECTION_DURATION),
            family(m.LAST_SUCCESS),
        )
        errors, skipped = family(m.COLLECTION_ERRORS), family(m.JOB_SKIPPED)
        for job, status in view.jobs.items():
            success.add_metric([job], 1.0 if status.success else 0.0)
            if status.duration is not None:
                duration.add_metric([job], status.duration)
            if status.last_success is not None:
                last.add_metric([job], status.last_success)
            errors.add_metric([job], float(status.failures))
            skipped.add_metric([job], float(status.skipped))
        yield from (success, duration, last, errors, skipped)

    def _inventory(self, snap: InventorySnapshot) -> Iterator[Family]:
        e = snap.engine
        info = family(m.ENGINE_INFO)
        info.add_metric([e.version, e.api_version, e.os, e.arch, e.kernel_version, e.product], 1.0)
        yield info

        for spec, value in (
            (m.IMAGES, snap.images_total),
            (m.IMAGES_DANGLING, snap.images_dangling),
            (m.IMAGES_UNUSED, snap.images_unused),
        ):
            total = family(spec)
            total.add_metric([], float(value))
            yield total
        by_state = family(m.CONTAINERS)
        for state, count in snap.containers_by_state.items():
            by_state.add_metric([state], float(count))
        yield by_state

        if self.per_image:
            yield from self._images(snap)
        if self.per_container:
            yield from self._containers(snap)

    def _images(self, snap: InventorySnapshot) -> Iterator[Family]:
        size, created = family(m.IMAGE_SIZE), family(m.IMAGE_CREATED)
        users, tags, last_used = (
            family(m.IMAGE_CONTAINERS),
            family(m.IMAGE_TAG_INFO),
            family(m.IMAGE_LAST_USED),
        )
        for image in snap.images:
            key = [image.image_id, image.name]
            if image.size is not None:
                size.add_metric(key, float(image.size))
            if image.created is not None:
                created.add_metric(key, float(image.created))
            users.add_metric(key, float(image.containers))
            if image.last_used is not None:
                last_used.add_metric(key, image.last_used)
            for repository, tag in image.tags:
                tags.add_metric([image.image_id, repository, tag], 1.0)
        yield from (size, created, users, tags, last_used)

    def _containers(self, snap: InventorySnapshot) -> Iterator[Family]:
        info, state, created = (
            family(m.CONTAINER_INFO),
            family(m.CONTAINER_STATE),
            family(m.CONTAINER_CREATED),
        )
        health, exit_code, outdated = (
            family(m.CONTAINER_HEALTH),
            family(m.CONTAINER_EXIT_CODE),
            family(m.CONTAINER_IMAGE_OUTDATED),
        )
        labels = (
            family(m.CONTAINER_LABELS, ("name", *self.label_names)) if self.label_names else None
        )
        for c in snap.containers:
            info.add_metric([c.name, c.container_id, c.image, c.image_id], 1.0)
            state.add_metric([c.name, c.state], 1.0)
            if c.created is not None:
                created.add_metric([c.name], float(c.created))
            if c.health is not None:
                health.add_metric([c.name, c.health], 1.0)
            if c.exit_code is not None:
                exit_code.add_metric([c.name], float(c.exit_code))
            outdated.add_metric([c.name], 1.0 if c.image_outdated else 0.0)
            if labels is not None:
                labels.add_metric([c.name, *c.labels], 1.0)
        yield from (info, state, created, health, exit_code, outdated)
        if labels is not None:
            yield labels

    def _disk_usage(
        self, snap: DiskUsageSnapshot, inventory: InventorySnapshot | None
    ) -> Iterator[Family]:
        usage, reclaimable = family(m.DISK_USAGE_BYTES), family(m.DISK_RECLAIMABLE)
        objects, active = family(m.DISK_OBJECTS), family(m.DISK_ACTIVE)
        for resource, u in snap.resources.items():
            usage.add_metric([resource], float(u.size))
            reclaimable.add_metric([resource], float(u.reclaimable))
            objects.add_metric([resource], float(u.total))
            active.add_metric([resource], float(u.active))
        yield from (usage, reclaimable, objects, active)
        if "images" in snap.resources:
            for spec, value in (
                (m.IMAGES_DANGLING_UNIQUE, snap.dangling_unique),
                (m.IMAGES_UNUSED_UNIQUE, snap.unused_unique),
            ):
                total = family(spec)
                total.add_metric([], float(value))
                yield total
            if self.per_image:
                unique, shared = family(m.IMAGE_UNIQUE_SIZE), family(m.IMAGE_SHARED_SIZE)
                for image in current_image_disk(snap, inventory):
                    unique.add_metric([image.image_id, image.name], float(image.unique))
                    shared.add_metric([image.image_id, image.name], float(image.shared))
                yield from (unique, shared)

    def _container_sizes(
        self, snap: ContainerSizesSnapshot, inventory: InventorySnapshot | None
    ) -> Iterator[Family]:
        rw, rootfs = family(m.CONTAINER_RW_SIZE), family(m.CONTAINER_ROOTFS_SIZE)
        for c in current_container_sizes(snap, inventory):
            if c.rw is not None:
                rw.add_metric([c.name], float(c.rw))
            if c.root_fs is not None:
                rootfs.add_metric([c.name], float(c.root_fs))
        yield from (rw, rootfs)
