"""A target's current state: one result slot per job, each swapped in atomically.

A job publishes its snapshot and status to its own slot; the collector reads ``view()``
once per rendering, so it sees each job's newest result as one consistent pair.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Generic, TypeVar

from .events import EventsSnapshot
from .metrics import CONTAINER_SIZES, DISK_USAGE, INVENTORY, REGISTRY, SWARM
from .snapshot import ContainerSizesSnapshot, DiskUsageSnapshot, InventorySnapshot, SwarmSnapshot
from .updates import UpdatesSnapshot


@dataclass(frozen=True)
class JobStatus:
    """How a job's runs went: what the docker_exporter_collection_* series report."""

    success: bool = False
    duration: float | None = None
    last_success: float | None = None
    failures: int = 0  # failed runs since start
    skipped: int = 0  # runs skipped because the previous one was still going
    last_error: str | None = None  # the cause of the current failure, None once recovered
    attempted: bool = False  # at least one run has finished


S = TypeVar("S")
StatusUpdate = Callable[[JobStatus], JobStatus]


@dataclass(frozen=True)
class Result(Generic[S]):
    status: JobStatus
    snapshot: S | None


class Slot(Generic[S]):
    """The newest result of one job. Only that job's runner publishes to it."""

    def __init__(self, job: str, scheduled: bool = True) -> None:
        self.job = job  # the job's name, its label value on the exporter's series
        self.scheduled = scheduled  # False for a job turned off: no status series
        self._lock = threading.Lock()
        self._result: Result[S] = Result(JobStatus(), None)

    @property
    def result(self) -> Result[S]:
        return self._result  # one attribute read: atomic

    def publish(self, update: StatusUpdate, snapshot: S | None) -> None:
        """Swap in a snapshot (None drops the job's data) with the updated status.

        The update is applied under the lock to the current status, so a change made while
        the job ran (a skipped run counted by the scheduler) is kept.
        """
        with self._lock:
            status = replace(update(self._result.status), attempted=True)
            self._result = Result(status, snapshot)

    def drop(self) -> None:
        """Forget the snapshot (a stopped target): no stale data when it starts again."""
        with self._lock:
            status = replace(self._result.status, success=False)
            self._result = Result(status, None)

    def count_skip(self) -> None:
        with self._lock:
            status = self._result.status
            self._result = replace(self._result, status=replace(status, skipped=status.skipped + 1))


@dataclass(frozen=True)
class View:
    """What one rendering reads: each scheduled job's status, and the snapshots."""

    jobs: Mapping[str, JobStatus]
    engine_up: bool  # the last inventory run succeeded
    inventory: InventorySnapshot | None = None
    disk_usage: DiskUsageSnapshot | None = None
    container_sizes: ContainerSizesSnapshot | None = None
    swarm: SwarmSnapshot | None = None
    updates: UpdatesSnapshot | None = None
    events: EventsSnapshot | None = None  # the event stream's counts; None without a stream


class State:
    def __init__(
        self,
        disk_usage: bool = True,
        container_sizes: bool = False,
        swarm: bool = False,
        registry: bool = False,
    ) -> None:
        self.inventory: Slot[InventorySnapshot] = Slot(INVENTORY)
        self.disk_usage: Slot[DiskUsageSnapshot] = Slot(DISK_USAGE, disk_usage)
        self.container_sizes: Slot[ContainerSizesSnapshot] = Slot(CONTAINER_SIZES, container_sizes)
        self.swarm: Slot[SwarmSnapshot] = Slot(SWARM, swarm)
        self.registry: Slot[UpdatesSnapshot] = Slot(REGISTRY, registry)
        # The event stream's newest counts, swapped whole by the stream (one attribute write)
        self.events: EventsSnapshot | None = None

    def drop(self) -> None:
        for slot in (
            self.inventory,
            self.disk_usage,
            self.container_sizes,
            self.swarm,
            self.registry,
        ):
            slot.drop()
        self.events = None

    @property
    def ready(self) -> bool:
        """The first inventory run has finished, successfully or not."""
        return self.inventory.result.status.attempted

    def view(self) -> View:
        inventory, disk_usage, sizes, swarm, registry = (
            self.inventory.result,
            self.disk_usage.result,
            self.container_sizes.result,
            self.swarm.result,
            self.registry.result,
        )
        statuses = {
            slot.job: result.status
            for slot, result in (
                (self.inventory, inventory),
                (self.disk_usage, disk_usage),
                (self.container_sizes, sizes),
                (self.swarm, swarm),
                (self.registry, registry),
            )
            if slot.scheduled
        }
        return View(
            MappingProxyType(statuses),
            inventory.status.success,
            inventory.snapshot,
            disk_usage.snapshot,
            sizes.snapshot,
            swarm.snapshot,
            registry.snapshot,
            self.events,
        )
