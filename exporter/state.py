"""The exporter's current state: the newest snapshot of each job, swapped in atomically.

Jobs publish; the collector reads ``view`` once per rendering, so it always sees one
consistent set of snapshots and job statuses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Union

from .metrics import INVENTORY
from .snapshot import ContainerSizesSnapshot, DiskUsageSnapshot, InventorySnapshot, JobStatus

Snapshot = Union[InventorySnapshot, DiskUsageSnapshot, ContainerSizesSnapshot]


@dataclass(frozen=True)
class View:
    jobs: Mapping[str, JobStatus]
    inventory: InventorySnapshot | None = None
    disk_usage: DiskUsageSnapshot | None = None
    container_sizes: ContainerSizesSnapshot | None = None
    ready: bool = False  # the first inventory attempt has finished


StatusUpdate = Callable[[JobStatus], JobStatus]


class State:
    """Each job's snapshot lives in the View field named like the job."""

    def __init__(self, jobs: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._view = View(jobs=MappingProxyType({job: JobStatus() for job in jobs}))

    @property
    def view(self) -> View:
        return self._view  # one attribute read: atomic

    def _swap(self, job: str, update: StatusUpdate, **changes: object) -> None:
        # The update is applied under the lock to the job's current status, so a change
        # made while the job ran (a skipped run counted by the scheduler) is kept.
        with self._lock:
            jobs = dict(self._view.jobs)
            jobs[job] = update(jobs[job])
            self._view = replace(self._view, jobs=MappingProxyType(jobs), **changes)  # type: ignore[arg-type]

    def publish(self, job: str, update: StatusUpdate, snapshot: Snapshot | None) -> None:
        """Swap in a job's snapshot and updated status; None drops the job's data."""
        changes: dict[str, object] = {job: snapshot}
        if job == INVENTORY:
            changes["ready"] = True
        self._swap(job, update, **changes)

    def count_skip(self, job: str) -> None:
        self._swap(job, lambda status: replace(status, skipped=status.skipped + 1))
