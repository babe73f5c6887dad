"""Builders of records, snapshots and a wired-up collector from engine answers.

conftest.py exposes them as fixtures (``synthetic_inventory``, ``exporter_registry``); tests
that need other answers call the builders directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.collector import DockerCollector
from exporter.config import label_name
from exporter.exposition import Rendered, render
from exporter.records import (
    parse_containers,
    parse_disk_usage,
    parse_images,
    parse_services,
    parse_tasks,
    parse_version,
)
from exporter.snapshot import (
    ContainerSizesSnapshot,
    DiskUsageSnapshot,
    InventorySnapshot,
    SwarmSnapshot,
    build_container_sizes,
    build_disk_usage,
    build_inventory,
    build_swarm,
)
from exporter.state import JobStatus, Slot, State
from tests.support.paths import load

NOW = 1765000000.0
LABELS = ("com.docker.compose.project", "com.docker.compose.service")
SYNTHETIC = {
    "version": "synthetic/version-1.52.json",
    "images": "synthetic/images-1.52.json",
    "containers": "synthetic/containers-1.52.json",
    "system_df": "synthetic/system_df-1.52.json",
    "services": "synthetic/services-1.52.json",
    "tasks": "synthetic/tasks-1.52.json",
}


def inventory_from(
    images: Sequence[dict[str, Any]],
    containers: Sequence[dict[str, Any]],
    *,
    version: dict[str, Any] | None = None,
    now: float = NOW,
    labels: tuple[str, ...] = LABELS,
) -> InventorySnapshot:
    """An inventory snapshot of these engine answers (the synthetic /version by default)."""
    return build_inventory(
        parse_version(version if version is not None else load(SYNTHETIC["version"])),
        parse_images(list(images)),
        parse_containers(list(containers)),
        now,
        labels,
    )


def synthetic_inventory(
    *, images: str = SYNTHETIC["images"], now: float = NOW, labels: tuple[str, ...] = LABELS
) -> InventorySnapshot:
    """The inventory of the synthetic API 1.52 answers in tests/fixtures/synthetic."""
    return inventory_from(load(images), load(SYNTHETIC["containers"]), now=now, labels=labels)


def recorded_inventory(
    engine: str, *, now: float = NOW, labels: tuple[str, ...] = LABELS
) -> InventorySnapshot:
    """The inventory of answers recorded on a real engine (tests/fixtures/<engine>/)."""
    return inventory_from(
        load(f"{engine}/images.json"),
        load(f"{engine}/containers.json"),
        version=load(f"{engine}/version.json"),
        now=now,
        labels=labels,
    )


def synthetic_disk_usage(*, now: float = NOW) -> DiskUsageSnapshot:
    return build_disk_usage(parse_disk_usage(load(SYNTHETIC["system_df"])), now)


def synthetic_container_sizes(*, now: float = NOW) -> ContainerSizesSnapshot:
    """Writable-layer sizes of the containers in the synthetic /system/df answer."""
    return build_container_sizes(parse_containers(load(SYNTHETIC["system_df"])["Containers"]), now)


def synthetic_swarm(*, now: float = NOW) -> SwarmSnapshot:
    """The services and tasks of a Swarm manager, from the synthetic answers."""
    return build_swarm(
        parse_services(load(SYNTHETIC["services"])), parse_tasks(load(SYNTHETIC["tasks"])), now
    )


def publish_synthetic(state: State, *, now: float = NOW) -> State:
    """Every job of ``state`` publishes its snapshot of the synthetic answers."""
    publish(state.inventory, synthetic_inventory(now=now), now=now)
    publish(state.disk_usage, synthetic_disk_usage(now=now), now=now)
    publish(state.container_sizes, synthetic_container_sizes(now=now), now=now)
    if state.swarm.scheduled:
        publish(state.swarm, synthetic_swarm(now=now), now=now)
    return state


def synthetic_state(*, now: float = NOW) -> State:
    """A state where every job published its snapshot of the synthetic answers."""
    return publish_synthetic(State(disk_usage=True, container_sizes=True), now=now)


def exporter_collector(
    state: State,
    *,
    per_image: bool = True,
    per_container: bool = True,
    labels: tuple[str, ...] = LABELS,
    alert_thresholds: tuple[tuple[str, float], ...] = (),
    per_volume: bool = True,
) -> DockerCollector:
    """The exporter's collector over ``state``."""
    names = tuple(label_name(k) for k in labels)
    return DockerCollector(
        state, per_image, per_container, names, alert_thresholds, per_volume=per_volume
    )


def exporter_registry(
    state: State,
    *,
    per_image: bool = True,
    per_container: bool = True,
    labels: tuple[str, ...] = LABELS,
    alert_thresholds: tuple[tuple[str, float], ...] = (),
    per_volume: bool = True,
) -> CollectorRegistry:
    """A fresh registry holding the exporter's collector over ``state``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        exporter_collector(
            state,
            per_image=per_image,
            per_container=per_container,
            labels=labels,
            alert_thresholds=alert_thresholds,
            per_volume=per_volume,
        )
    )
    return registry


def publish(slot: Slot[Any], snapshot: Any, *, now: float = NOW) -> None:
    """Publish ``snapshot`` to a job's slot as a successful run that finished at ``now``."""
    ok = JobStatus(success=True, duration=0.25, last_success=now)
    slot.publish(lambda _: ok, snapshot)


def rendered(snapshot: InventorySnapshot, *, labels: tuple[str, ...] = LABELS) -> Rendered:
    """Both formats of the exposition of one published inventory."""
    state = State(disk_usage=False)
    collector = exporter_collector(state, labels=labels)
    publish(state.inventory, snapshot)
    return render([collector])
