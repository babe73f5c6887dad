"""A target: one engine with its clients, jobs, state and rendered exposition.

Without --config.file the exporter has one target built from the flags; with it, one per
configured or discovered engine. A target's jobs run on the shared scheduler under ids
``<target>/<job>#<serial>``, so targets never share a client, a slot or a rendering.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector

from .buildinfo import BuildInfoCollector
from .collector import DockerCollector
from .config import TargetConfig
from .exposition import Exposition
from .jobs import Runner, Scheduler, build_jobs
from .state import State

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
        )
        collectors: list[Collector] = [
            DockerCollector(
                self.state,
                settings.per_image,
                settings.per_container,
                settings.label_names,
                settings.alert_thresholds,
            )
        ]
        if process_metrics:  # the exporter's own metrics: process_* and its build info
            collectors += [ProcessCollector(registry=None), BuildInfoCollector()]
        self.exposition = Exposition(collectors)
        self.jobs = build_jobs(config.engine, settings, self.state, log_prefix)
        self.on_publish = on_publish
        self.runners = [Runner(job, self._published, log_prefix) for job in self.jobs]
        self.serial = next(_serials)
        self.collecting = False
        self.last_scraped = 0.0  # clock time of the last scrape
        self.scrape_gap = 0.0  # between the last two scrapes

    def _published(self) -> None:
        if not self.collecting:
            self.close_clients()  # a run that was in flight when the target stopped
        self.exposition.refresh()
        if self.on_publish is not None:
            self.on_publish()

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
        """Schedule every job, the first runs at once."""
        self.collecting = True  # first: a run that ends at once must not close its client
        for runner in self.runners:
            scheduler.add(self.job_id(runner), runner)

    def stop(self, scheduler: Scheduler, publish: bool = True) -> None:
        """Unschedule the jobs, close their engine connections and drop the data, which
        would only grow stale. ``publish=False``: nobody will be served it again (a target
        a reload removed or replaced), so it is not rendered again either."""
        for runner in self.runners:
            scheduler.remove(self.job_id(runner))
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

    def ready(self) -> bool:
        return self.target.state.ready

    def service_discovery(self) -> bytes | None:
        return None
