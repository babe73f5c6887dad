"""The exporter's current state: the newest snapshot of each job, swapped in atomically.

Jobs publish; the collector reads ``view`` once per rendering, so it always sees one
consistent set of snapshots and job statuses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Union

from .snapshot import ContainerSizesSnapshot, DiskUsageSnapshot, InventorySnapshot, JobStatus

Snapshot = Union[InventorySnapshot, DiskUsageSnapshot, ContainerSizesSnapshot]


@dataclass(frozen=True)
class View:
    jobs: Mapping[str, JobStatus]
    inventory: InventorySnapshot | None = None
    disk_usage: DiskUsageSnapshot | None = None
    container_sizes: ContainerSizesSnapshot | None = None
    ready: bool = False  # the first inventory attempt has finished


_FIELD = {
    InventorySnapshot: "inventory",
    DiskUsageSnapshot: "disk_usage",
    ContainerSizesSnapshot: "container_sizes",
}


class State:
    def __init__(self, jobs: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._view = View(jobs=MappingProxyType({job: JobStatus() for job in jobs}))

    @property
    def view(self) -> View:
        return self._view  # one attribute read: atomic

    def publish(
        self, job: str, status: JobStatus, snapshot: Snapshot | None, kind: type[Snapshot]
    ) -> None:
        """Swap in a job's new status and snapshot; None drops the job's data (no stale series)."""
        with self._lock:
            jobs = dict(self._view.jobs)
            jobs[job] = status
            changes: dict[str, object] = {"jobs": MappingProxyType(jobs), _FIELD[kind]: snapshot}
            if job == "inventory":
                changes["ready"] = True
            self._view = replace(self._view, **changes)  # type: ignore[arg-type]

    def count_skip(self, job: str) -> None:
        with self._lock:
            jobs = dict(self._view.jobs)
            jobs[job] = replace(jobs[job], skipped=jobs[job].skipped + 1)
            self._view = replace(self._view, jobs=MappingProxyType(jobs))
