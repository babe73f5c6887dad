"""A target: one engine with its clients, jobs, state and rendered exposition.

Without --config.file the exporter has one target built from the flags; with it, one per
configured or discovered engine. A target's jobs run on the shared scheduler under ids
``<target>/<job>#<serial>``, so targets never share a client, a slot or a rendering.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from operator import attrgetter, eq
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector

from .buildinfo import BuildInfoCollector
from .collector import DockerCollector
from .config import TargetConfig
from .events import EventsSnapshot, InventoryChanges
from .eventstream import EventStream
from .exposition import Exposition
from .jobs import InventoryJob, Runner, Scheduler, build_jobs
from .priority import run_starts
from .snapshot import InventorySnapshot, container_id_of
from .state import State

_state = attrgetter("state")

_serials = itertools.count(1)


class Target:
    def __init__(
        self,
        config: TargetConfig,
        log_prefix: str = "",
        process_metrics: bool = False,
        on_publish: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        settings = config.settings
        schedules = settings.schedules
        self.state = State(
            disk_usage=schedules.disk_usage.enabled,
            container_sizes=schedules.container_sizes.enabled,
            swarm=schedules.swarm.enabled,
            registry=schedules.registry.enabled,
        )
        collectors: list[Collector] = [
            DockerCollector(
                self.state,
                settings.per_image,
                settings.per_container,
                settings.label_names,
                settings.alert_thresholds,
                per_volume=settings.per_volume,
            )
        ]
        if process_metrics:  # the exporter's own metrics: process_* and its build info
            collectors += [ProcessCollector(registry=None), BuildInfoCollector()]
        self.exposition = Exposition(collectors)
        self.jobs = build_jobs(config.engine, settings, self.state, log_prefix)
        self.on_publish = on_publish
        self.runners = [
            Runner(job, self._inventory_published if i == 0 else self._published, log_prefix)
            for i, job in enumerate(self.jobs)
        ]
        self.serial = next(_serials)
        self.collecting = False
        self.last_scraped = 0.0  # clock time of the last scrape
        self.scrape_gap = 0.0  # between the last two scrapes
        self.log_prefix = log_prefix
        self.events: EventStream | None = None  # the event stream while collecting
        self._scheduler: Scheduler | None = None
        self._listed: InventorySnapshot | None = None  # the inventory the stream last saw
        self._created: frozenset[str] = frozenset()  # its containers never started
        # the stream asked for an inventory run that has not published yet: that run
        # renders the stream's counts too (one rendering, not two, per event burst)
        self._inventory_pending = False

    def _inventory_published(self) -> None:
        self._inventory_pending = False  # before rendering: see _events_published
        self._published()

    def _published(self) -> None:
        if not self.collecting:
            self.close_clients()  # a run that was in flight when the target stopped
        self.exposition.refresh()
        if self.on_publish is not None:
            self.on_publish()
        inventory = self.state.inventory.result.snapshot
        if self.events is not None and inventory is not None and inventory is not self._listed:
            self._inventory_seen(inventory)
            self.events.forget_gone(
                frozenset(map(container_id_of, inventory.containers)), inventory.collected_at
            )

    # --- the event stream ----------------------------------------------------------------

    def _inventory_seen(self, inventory: InventorySnapshot) -> None:
        containers = inventory.containers
        created = map(eq, map(_state, containers), itertools.repeat("created"))
        self._created = frozenset(map(container_id_of, itertools.compress(containers, created)))
        self._listed = inventory

    def _never_started(self, container_id: str) -> bool:
        inventory = self.state.inventory.result.snapshot
        if inventory is not None and inventory is not self._listed:
            self._inventory_seen(inventory)
        return container_id in self._created

    def _events_published(self, snapshot: EventsSnapshot) -> None:
        if self.collecting:
            self.state.events = snapshot
            # read after the counts are set, and cleared by the run before it renders: a
            # run still to publish renders them
            if not self._inventory_pending:
                run_starts()  # its rendering steps aside for scrapes, as a job's run does
                self._published()

    def _collect_inventory(self) -> bool:
        """The stream's ask for an inventory run; False while one is running."""
        runner = self.runners[0]
        if runner.running:
            return False
        if self._scheduler is not None and self.collecting:
            self._inventory_pending = True
            self._scheduler.run_soon(self.job_id(runner))
        return True

    def close_clients(self) -> None:
        """Close every job's engine connections (a later start opens them again)."""
        for job in self.jobs:
            job.client.close()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def interval(self) -> float:
        return self.config.settings.schedules.inventory.interval

    def job_id(self, runner: Runner[Any]) -> str:
        # Unique per Target object: a run of a replaced target still in flight must not
        # count as an instance of its successor's job.
        return f"{self.name}/{runner.job.name}#{self.serial}"

    def start(self, scheduler: Scheduler) -> None:
        """Subscribe to the events and schedule every job, the first runs at once (the
        inventory's after the subscription: nothing falls between the two)."""
        self._scheduler = scheduler
        self.collecting = True  # first: a run that ends at once must not close its client
        if self.config.settings.events:
            inventory = self.runners[0].job
            assert isinstance(inventory, InventoryJob)
            inventory.changes = InventoryChanges()
            self.events = EventStream(
                self.config.engine,
                self._events_published,
                self._collect_inventory,
                self._never_started,
                self.log_prefix,
                lambda: self.state.inventory.result.status.duration,
                changes=inventory.changes,
            )
            # subscribed by the first inventory run, on the scheduler: not before the
            # exporter listens, and always before the first list
            # (waiting at most the inventory's own timeout: a hanging engine holds a worker
            # no longer than it would without the stream)
            stream, wait = self.events, min(inventory.schedule.timeout, 6.0)
            inventory.before_list = lambda: stream.subscribe(wait)
            self.state.events = EventsSnapshot()  # stream_up 0 until it subscribes
        for runner in self.runners:
            scheduler.add(self.job_id(runner), runner, runner.job.start_delay)

    def stop(self, scheduler: Scheduler, publish: bool = True) -> None:
        """Unschedule the jobs, close their engine connections and drop the data, which
        would only grow stale. ``publish=False``: nobody will be served it again (a target
        a reload removed or replaced), so it is not rendered again either."""
        for runner in self.runners:
            scheduler.remove(self.job_id(runner))
        if self.events is not None:
            self.events.stop()
            self.events = None
        self.collecting = False
        self.state.drop()
        self.close_clients()
        if publish:
            self._published()

    def scraped(self, now: float) -> None:
        if self.last_scraped:
            self.scrape_gap = now - self.last_scraped
        self.last_scraped = now


class SingleTarget:
    """Serving without --config.file: the one target on a plain /metrics, as always."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.description = target.config.engine.display

    def exposition(self, target: str | None) -> Exposition | None:
        return self.target.exposition if target is None else None

    def exposition_at_once(self) -> Exposition | None:
        return self.target.exposition

    def ready(self) -> bool:
        return self.target.state.ready

    def service_discovery(self) -> bytes | None:
        return None
