"""Scheduled jobs: fetch from the engine, parse records, build a snapshot, publish it.

Each job has its own engine client and timeout, and APScheduler runs it with at most
one instance at a time: a run that falls due while the previous one is still going is
skipped and counted. A failure drops the job's data, sets its success to 0 and is
logged once per cause; the next run retries by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .config import Config
from .engine import EngineClient, EngineError
from .metrics import CONTAINER_SIZES, DISK_USAGE, INVENTORY
from .records import EngineDataError, EngineInfo, parse_containers, parse_disk_usage, parse_images
from .snapshot import (
    JobStatus,
    build_container_sizes,
    build_disk_usage,
    build_inventory,
)
from .state import Snapshot, State

log = logging.getLogger(__name__)

# /system/df's type= names, by our resource names
DF_TYPES = {
    "images": "image",
    "containers": "container",
    "volumes": "volume",
    "build_cache": "build-cache",
}


class Job:
    """Fetch-and-build for one job; subclasses define ``collect``."""

    name: str  # also the View field its snapshot goes to

    def __init__(self, client: EngineClient) -> None:
        self.client = client

    def collect(self, now: float) -> Snapshot:
        raise NotImplementedError


class InventoryJob(Job):
    name = INVENTORY

    def __init__(self, client: EngineClient, label_keys: tuple[str, ...]) -> None:
        super().__init__(client)
        self.label_keys = label_keys
        self.engine_seen: EngineInfo | None = None  # logged when it changes (upgrades)

    def collect(self, now: float) -> Snapshot:
        engine = self.client.engine()
        if engine != self.engine_seen:
            self.engine_seen = engine
            log.info("engine: %s %s, API %s", engine.product, engine.version, engine.api_version)
        images = parse_images(self.client.images())
        containers = parse_containers(self.client.containers())
        return build_inventory(engine, images, containers, now, self.label_keys)


class DiskUsageJob(Job):
    name = DISK_USAGE

    def __init__(self, client: EngineClient, resources: tuple[str, ...], timeout: float) -> None:
        super().__init__(client)
        self.resources = resources
        self.timeout = timeout

    def collect(self, now: float) -> Snapshot:
        types = tuple(DF_TYPES[r] for r in self.resources)
        raw = self.client.disk_usage(types, self.timeout)
        return build_disk_usage(parse_disk_usage(raw), now, self.resources)


class ContainerSizesJob(Job):
    name = CONTAINER_SIZES

    def __init__(self, client: EngineClient, timeout: float) -> None:
        super().__init__(client)
        self.timeout = timeout

    def collect(self, now: float) -> Snapshot:
        raw = self.client.containers(size=True, timeout=self.timeout)
        return build_container_sizes(parse_containers(raw), now)


class Runner:
    """Runs one job, times it, publishes the outcome, and logs each failure cause once."""

    def __init__(
        self,
        job: Job,
        state: State,
        on_publish: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job = job
        self.state = state
        self.on_publish = on_publish
        self.clock = clock

    def __call__(self) -> None:
        started = time.monotonic()
        now = self.clock()
        # Only this runner changes the job's error, and never two runs of a job at a time.
        previous_error = self.state.view.jobs[self.job.name].error
        snapshot: Snapshot | None = None
        cause: str | None = None
        try:
            snapshot = self.job.collect(now)
        except (EngineError, EngineDataError) as exc:
            cause = str(exc)
        except Exception as exc:  # a bug must not stop the schedule; log it once with its trace
            cause = f"internal error: {type(exc).__name__}: {exc}"
            if cause != previous_error:
                log.exception("%s job: %s", self.job.name, cause)
                previous_error = cause
        duration = time.monotonic() - started
        update: Callable[[JobStatus], JobStatus]
        if cause is None:
            if previous_error is not None:
                log.info("%s job: recovered", self.job.name)

            def update(s: JobStatus) -> JobStatus:
                return replace(s, success=True, duration=duration, last_success=now, error=None)

        else:
            if cause != previous_error:
                log.error("%s job: %s", self.job.name, cause)

            def update(s: JobStatus) -> JobStatus:
                return replace(
                    s, success=False, duration=duration, errors=s.errors + 1, error=cause
                )

        self.state.publish(self.job.name, update, snapshot)
        self.on_publish()


def build_jobs(config: Config) -> list[Job]:
    jobs: list[Job] = [
        InventoryJob(EngineClient(config.engine, config.inventory.timeout), config.container_labels)
    ]
    if config.disk_usage.interval > 0:
        client = EngineClient(config.engine, config.disk_usage.timeout)
        jobs.append(DiskUsageJob(client, config.disk_usage_resources, config.disk_usage.timeout))
    if config.container_sizes.interval > 0:
        client = EngineClient(config.engine, config.container_sizes.timeout)
        jobs.append(ContainerSizesJob(client, config.container_sizes.timeout))
    return jobs


def start_scheduler(
    config: Config, runners: list[Runner], state: State, on_publish: Callable[[], None]
) -> BackgroundScheduler:
    """One interval job per runner, the first run at once, never two of a job at a time."""
    intervals = {
        INVENTORY: config.inventory.interval,
        DISK_USAGE: config.disk_usage.interval,
        CONTAINER_SIZES: config.container_sizes.interval,
    }
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=len(runners) + 1)},
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        timezone=timezone.utc,
    )
    logged: set[str] = set()

    def skipped(event: JobExecutionEvent) -> None:
        state.count_skip(event.job_id)
        on_publish()
        if event.job_id not in logged:
            logged.add(event.job_id)
            log.warning("%s job: a run was skipped, the previous one is still going", event.job_id)

    scheduler.add_listener(skipped, EVENT_JOB_MAX_INSTANCES)
    now = datetime.now(timezone.utc)
    for runner in runners:
        scheduler.add_job(
            runner,
            "interval",
            seconds=intervals[runner.job.name],
            id=runner.job.name,
            name=runner.job.name,
            next_run_time=now,
        )
    scheduler.start()
    return scheduler
