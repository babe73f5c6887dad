"""Scheduled jobs: fetch from the engine, parse records, build a snapshot, publish it.

Each job has its own engine client, schedule and result slot. One scheduler with a bounded
worker pool runs every job of every target, never two runs of one job at a time: a run
that falls due while the previous one is still going (or still waits for a worker) is
skipped and counted. A failure drops the job's data, sets its success to 0 and is logged
once per cause; the next run retries by itself.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from .config import EngineConfig, JobSchedule, TargetSettings
from .engine import EngineClient, EngineError, quoted
from .events import InventoryChanges
from .filesystem import OFF, FilesystemUsage, data_root_path, measure
from .priority import run_starts
from .records import (
    PROJECT_LABELS,
    ContainerStream,
    EngineDataError,
    EngineInfo,
    decode_containers,
    decode_images,
    parse_disk_usage,
    parse_services,
    parse_tasks,
)
from .registry import RegistryChecker, TagCheck, parse_registry_config, shared_checker
from .snapshot import (
    ContainerFactory,
    ContainerSizesSnapshot,
    DiskUsageSnapshot,
    InventorySnapshot,
    SwarmSnapshot,
    assemble_inventory,
    build_container_sizes,
    build_disk_usage,
    build_swarm,
    patch_inventory,
    short_id,
    tag_index,
)
from .state import JobStatus, Slot, State
from .updates import (
    LocalImages,
    TagKey,
    UpdatesSnapshot,
    build_updates,
    digests_to_check,
    key_of,
    needs_inspect,
    refs_to_check,
)

log = logging.getLogger(__name__)

# /system/df's type= names, by our resource names
DF_TYPES = {
    "images": "image",
    "containers": "container",
    "volumes": "volume",
    "build_cache": "build-cache",
}

S = TypeVar("S")


class Job(Generic[S]):
    """Fetch-and-build for one job; subclasses define ``collect``."""

    start_delay = 0.0  # seconds before the first run

    def __init__(self, client: EngineClient, schedule: JobSchedule, slot: Slot[S]) -> None:
        self.client = client
        self.schedule = schedule
        self.slot = slot

    @property
    def name(self) -> str:
        return self.slot.job

    def collect(self, now: float) -> S:
        raise NotImplementedError


class InventoryJob(Job[InventorySnapshot]):
    def __init__(
        self,
        client: EngineClient,
        schedule: JobSchedule,
        slot: Slot[InventorySnapshot],
        label_keys: tuple[str, ...],
        log_prefix: str = "",
    ) -> None:
        super().__init__(client, schedule, slot)
        self.label_keys = label_keys
        self.log_prefix = log_prefix
        self.engine_seen: EngineInfo | None = None  # logged when it changes (upgrades)
        # Called before each list: the event stream's wait for its first subscription, so
        # that no event falls between the list and the stream (none without a stream).
        self.before_list: Callable[[], None] | None = None
        # What the event stream saw change (None without a stream): a run it asked for
        # lists only those containers, until the interval calls for a full list again.
        self.changes: InventoryChanges | None = None
        self.listed_all_at = -float("inf")  # monotonic time of the last full list
        self.patches = 0  # runs that listed only changed containers, for tests and benchmarks

    def collect(self, now: float) -> InventorySnapshot:
        if self.before_list is not None:
            self.before_list()
        changed = self.changes.take() if self.changes is not None else None
        previous = self.slot.result.snapshot  # None after a failed run
        started = time.monotonic()
        if (
            changed
            and previous is not None
            and started - self.listed_all_at < self.schedule.interval
        ):
            try:
                return self._patch(previous, changed, now)
            except BaseException:
                assert self.changes is not None
                self.changes.everything()  # those changes are not shown: the next run lists all
                raise
        self.listed_all_at = started
        engine = self.client.engine()
        if engine != self.engine_seen:
            self.engine_seen = engine
            # engine-sent text is quoted: a newline in it cannot split or forge a log line
            log.info(
                "%sengine: %s %s, API %s",
                self.log_prefix,
                quoted(engine.product),
                quoted(engine.version),
                quoted(engine.api_version),
            )
        # the images' bytes are freed once decoded; the containers' are decoded as they come;
        # the project labels always: docker_project_containers counts by them
        images = self.client.images(lambda body: decode_images(body, release=True))
        keys = frozenset(self.label_keys).union(PROJECT_LABELS)
        tag_to_id = tag_index(images)
        facts_of = ContainerFactory(tag_to_id, self.label_keys)
        # each container's facts are made as its piece is decoded: its record goes at once
        containers = self.client.containers(incremental=lambda: ContainerStream(keys, facts_of))
        return assemble_inventory(engine, images, containers, tag_to_id, now)

    def _patch(
        self, previous: InventorySnapshot, changed: frozenset[str], now: float
    ) -> InventorySnapshot:
        """The previous inventory with only the changed containers listed again."""
        keys = frozenset(self.label_keys).union(PROJECT_LABELS)
        listed = self.client.containers(incremental=lambda: ContainerStream(keys), ids=changed)
        self.patches += 1
        asked = frozenset(short_id(i) for i in changed)
        return patch_inventory(previous, listed, asked, now, self.label_keys)


class DiskUsageJob(Job[DiskUsageSnapshot]):
    def __init__(
        self,
        client: EngineClient,
        schedule: JobSchedule,
        slot: Slot[DiskUsageSnapshot],
        resources: tuple[str, ...],
        data_root_filesystem: str = OFF,
        log_prefix: str = "",
    ) -> None:
        super().__init__(client, schedule, slot)
        self.resources = resources
        self.data_root_filesystem = data_root_filesystem
        self.log_prefix = log_prefix
        self.fs_error = ""  # the last cause the filesystem could not be measured, logged once

    def collect(self, now: float) -> DiskUsageSnapshot:
        types = tuple(DF_TYPES[r] for r in self.resources)
        raw = self.client.disk_usage(types, self.schedule.timeout)
        snapshot = build_disk_usage(parse_disk_usage(raw), now, self.resources)
        return replace(snapshot, data_root_fs=self.measure_data_root())

    def measure_data_root(self) -> FilesystemUsage | None:
        """statvfs of the data root's filesystem where it is visible here; None otherwise."""
        engine = self.client.engine()
        path = data_root_path(self.data_root_filesystem, self.client.config.host, engine.data_root)
        if path is None:
            return None
        try:
            usage = measure(path)
        except OSError as exc:
            cause = f"cannot measure the data root's filesystem at {path}: {exc.strerror or exc}"
            if cause != self.fs_error:
                log.warning("%s%s job: %s", self.log_prefix, self.name, cause)
                self.fs_error = cause
            return None
        self.fs_error = ""
        return usage


class ContainerSizesJob(Job[ContainerSizesSnapshot]):
    def collect(self, now: float) -> ContainerSizesSnapshot:
        containers = self.client.containers(
            size=True,
            timeout=self.schedule.timeout,
            decode=lambda body: decode_containers(body, ()),  # sizes only: no labels
        )
        return build_container_sizes(containers, now)


class SwarmJob(Job[SwarmSnapshot]):
    """Services and tasks of a Swarm manager: /services and /tasks, two requests whatever
    their number.

    Whether the engine is a manager is what the newest inventory read from /info (on
    connect and hourly, with /version). Until an inventory says so, this job does not even
    connect: a worker, an engine outside Swarm, or one that does not answer costs nothing
    and holds no worker.
    """

    def __init__(
        self,
        client: EngineClient,
        schedule: JobSchedule,
        slot: Slot[SwarmSnapshot],
        inventory: Slot[InventorySnapshot],
    ) -> None:
        super().__init__(client, schedule, slot)
        self.inventory = inventory

    def collect(self, now: float) -> SwarmSnapshot:
        seen = self.inventory.result.snapshot
        if seen is None or not seen.engine.swarm_manager:
            return SwarmSnapshot(now, manager=False)
        if not self.client.engine().swarm_manager:  # it left the swarm since
            return SwarmSnapshot(now, manager=False)
        services = parse_services(self.client.services())
        tasks = parse_tasks(self.client.tasks())
        return build_swarm(services, tasks, now)


class RegistryJob(Job[UpdatesSnapshot]):
    """Which containers to pull or recreate: the engine's tags against their registries.

    Engine requests per run are constant: /info (RegistryConfig), /containers/json and
    /images/json, plus one inspect per container the first time it is seen with an image
    ID where its tag was (its Config.Image never changes: cached by container ID). Registry
    requests go through the exporter-wide ``RegistryChecker``: one per tag per interval,
    whichever targets share the tag. The first run waits a random part of the interval
    (at most a minute), so that many exporters don't ask a registry at the same moment.
    """

    def __init__(
        self,
        client: EngineClient,
        schedule: JobSchedule,
        slot: Slot[UpdatesSnapshot],
        checker: RegistryChecker,
        all_tags: bool = False,
    ) -> None:
        super().__init__(client, schedule, slot)
        self.checker = checker
        self.all_tags = all_tags
        self.created_from: dict[str, str] = {}  # container ID -> Config.Image
        self.start_delay = random.uniform(0.0, min(schedule.interval * 0.1, 60.0))

    def collect(self, now: float) -> UpdatesSnapshot:
        config = parse_registry_config(self.client.registry_config())
        containers = self.client.containers(decode=lambda body: decode_containers(body, ()))
        images = self.client.images(decode_images)
        created_from: dict[str, str] = {}
        for c in containers:
            if not needs_inspect(c):
                created_from[c.id] = c.image
            elif c.id in self.created_from:
                created_from[c.id] = self.created_from[c.id]
            else:
                created_from[c.id] = self.client.container_image_ref(c.id)
        self.created_from = created_from  # containers gone are forgotten
        local = LocalImages(images)
        refs = refs_to_check(containers, created_from, local, self.all_tags)
        checks: dict[TagKey, TagCheck] = {}
        unreachable: dict[str, TagCheck] = {}  # a registry without answer: not asked again now
        for ref in refs:
            if ref.registry in unreachable:
                checks[key_of(ref)] = unreachable[ref.registry]
                continue
            check = self.checker.check(ref, config.plain_http(ref.registry), self.schedule.interval)
            checks[key_of(ref)] = check
            if check.unreachable:
                unreachable[ref.registry] = check
        # the containerd store's local digests: did the registry ever have them?
        known: dict[TagKey, TagCheck] = {}
        for ref in digests_to_check(containers, created_from, local, checks, self.all_tags):
            if ref.registry in unreachable:
                continue
            check = self.checker.check(ref, config.plain_http(ref.registry), self.schedule.interval)
            known[key_of(ref)] = check
            if check.unreachable:
                unreachable[ref.registry] = check
        stats = self.checker.stats(ref.registry for ref in refs)
        return build_updates(now, containers, created_from, images, checks, stats, known)


class Runner(Generic[S]):
    """Runs one job, times it, publishes the outcome, and logs each failure cause once."""

    def __init__(
        self,
        job: Job[S],
        on_publish: Callable[[], None],
        log_prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job = job
        self.on_publish = on_publish
        self.what = f"{log_prefix}{job.name} job"  # how the logs name it
        self.clock = clock
        self.running = False  # a run is going (the event stream asks for runs only between)

    def __call__(self) -> None:
        self.running = True
        try:
            self._run()
        finally:
            self.running = False

    def _run(self) -> None:
        run_starts()  # scrapes first, for a bounded time (exporter/priority.py)
        started = time.monotonic()
        now = self.clock()
        # Only this runner changes the job's last error, and never two runs of a job at a time.
        previous_error = self.job.slot.result.status.last_error
        snapshot: S | None = None
        # ``cause`` stays the same from one failure to the next of the same kind, so it is
        # logged once however the engine's text varies; ``message`` adds what it sent.
        cause: str | None = None
        message = ""
        try:
            snapshot = self.job.collect(now)
        except EngineError as exc:
            cause, message = exc.cause, str(exc)
        except EngineDataError as exc:
            cause = message = str(exc)
        except Exception as exc:  # a bug must not stop the schedule; log it once with its trace
            cause = f"internal error: {type(exc).__name__}"
            if cause != previous_error:
                log.exception("%s: %s: %s", self.what, cause, quoted(str(exc)))
                previous_error = cause
        duration = time.monotonic() - started
        update: Callable[[JobStatus], JobStatus]
        if cause is None:
            if previous_error is not None:
                log.info("%s: recovered", self.what)

            def update(s: JobStatus) -> JobStatus:
                return replace(
                    s, success=True, duration=duration, last_success=now, last_error=None
                )

        else:
            if cause != previous_error:
                log.error("%s: %s", self.what, message)

            def update(s: JobStatus) -> JobStatus:
                return replace(
                    s, success=False, duration=duration, failures=s.failures + 1, last_error=cause
                )

        self.job.slot.publish(update, snapshot)
        self.on_publish()

    def skipped(self) -> None:
        self.job.slot.count_skip()
        self.on_publish()


def build_jobs(
    engine: EngineConfig,
    settings: TargetSettings,
    state: State,
    log_prefix: str = "",
    checker: RegistryChecker | None = None,
) -> list[Job[Any]]:
    """The target's jobs, each with its own engine client (a slow df never holds the
    inventory's connection) and the slot it publishes to; jobs turned off are left out."""
    schedules = settings.schedules

    def client(schedule: JobSchedule) -> EngineClient:
        short = min(schedule.timeout, schedules.inventory.timeout)
        return EngineClient(engine, schedule.timeout, settings.max_answer_bytes, short)

    jobs: list[Job[Any]] = [
        InventoryJob(
            client(schedules.inventory),
            schedules.inventory,
            state.inventory,
            settings.container_labels,
            log_prefix,
        )
    ]
    if schedules.disk_usage.enabled:
        jobs.append(
            DiskUsageJob(
                client(schedules.disk_usage),
                schedules.disk_usage,
                state.disk_usage,
                settings.disk_usage_resources,
                settings.data_root_filesystem,
                log_prefix,
            )
        )
    if schedules.swarm.enabled:
        jobs.append(
            SwarmJob(client(schedules.swarm), schedules.swarm, state.swarm, state.inventory)
        )
    if schedules.container_sizes.enabled:
        jobs.append(
            ContainerSizesJob(
                client(schedules.container_sizes), schedules.container_sizes, state.container_sizes
            )
        )
    if schedules.registry.enabled:
        jobs.append(
            RegistryJob(
                client(schedules.registry),
                schedules.registry,
                state.registry,
                checker or shared_checker(),
                settings.registry_all_tags,
            )
        )
    return jobs


class Gate:
    """What one engine may hold of the worker pool, so a hanging one starves no other.

    A target is *proven* while its inventory job's last run succeeded.
    - An unproven target (just started, failing, or hanging) runs its inventory job only,
      one run at a time: a hanging engine holds one worker, not one per job. Its other
      jobs wait until the inventory succeeds. (A proven target runs its jobs side by
      side: a slow df never delays the inventory.)
    - Unproven targets that have tried (failing or hanging ones) share at most
      ``workers - 1`` workers (all of them when there is only one): at least one worker
      always stays for targets that answer. A target's first run is not held back, so a
      fleet starts at full speed.
    A run the gate refuses is tried again ``RETRY`` seconds later (no engine request is
    made meanwhile), so a target's df waits for its inventory, not for a whole interval.
    """

    RETRY = 1.0

    def __init__(self, workers: int) -> None:
        self.unproven_slots = max(1, workers - 1)
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._unproven_running = 0

    def enter(self, target: str, unproven: bool, failed: bool) -> bool:
        """May the run start? ``failed``: the target's inventory ran and did not succeed."""
        if not unproven:
            return True
        with self._lock:
            if target in self._busy:
                return False
            if failed and self._unproven_running >= self.unproven_slots:
                return False
            self._busy.add(target)
            self._unproven_running += failed
            return True

    def leave(self, target: str, unproven: bool, failed: bool) -> None:
        if not unproven:
            return
        with self._lock:
            self._busy.discard(target)
            self._unproven_running -= failed


def _target_of(job_id: str) -> str:
    """``<target>/<job>#<serial>`` -> ``<target>#<serial>``: one Target object."""
    return job_id.partition("/")[0] + "#" + job_id.rpartition("#")[2]


def _inventory_of(job_id: str) -> str:
    """The id of the inventory job of the same Target object."""
    return job_id.partition("/")[0] + "/inventory#" + job_id.rpartition("#")[2]


class Scheduler:
    """One APScheduler with a bounded worker pool for the jobs of every target.

    Each runner is an interval job with its own id; its first run is at once. A run that
    falls due while the previous run is still going, or still waits for a free worker,
    is skipped, counted on the job's slot and logged once per job. The ``Gate`` decides,
    as a run starts, whether the target may take a worker now.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.gate = Gate(workers)
        self._scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(max_workers=workers),
                # reload checks and idle stops never wait behind hanging engines
                "housekeeping": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        self._lock = threading.Lock()
        self._runners: dict[str, Runner[Any]] = {}
        self._skip_logged: set[str] = set()
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    def _skipped(self, event: JobExecutionEvent) -> None:
        with self._lock:
            runner = self._runners.get(event.job_id)
            first = event.job_id not in self._skip_logged
            self._skip_logged.add(event.job_id)
        if runner is None:
            return
        runner.skipped()
        if first:
            log.warning(
                "%s: a run was skipped, the previous one is still going or waits for a worker",
                runner.what,
            )

    def start(self) -> None:
        self._scheduler.start()

    def add(self, job_id: str, runner: Runner[Any], delay: float = 0.0) -> None:
        with self._lock:
            self._runners[job_id] = runner
            self._skip_logged.discard(job_id)
        first = datetime.now(timezone.utc) + timedelta(seconds=delay)
        self._scheduler.add_job(
            self._run,
            "interval",
            args=(job_id, runner),
            seconds=runner.job.schedule.interval,
            id=job_id,
            name=job_id,
            next_run_time=first,
            replace_existing=True,
        )

    def run_soon(self, job_id: str) -> None:
        """Run the job now (an event changed what it collects); its interval restarts."""
        with contextlib.suppress(JobLookupError):  # removed meanwhile
            self._scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc))

    def _run(self, job_id: str, runner: Runner[Any]) -> None:
        target = _target_of(job_id)
        with self._lock:
            inventory = self._runners.get(_inventory_of(job_id))
        # a runner without an inventory job of its own (a test's single job) leads itself
        leader = inventory if inventory is not None else runner
        status = leader.job.slot.result.status
        unproven, failed = not status.success, status.attempted and not status.success
        if (unproven and runner is not leader) or not self.gate.enter(target, unproven, failed):
            later = datetime.now(timezone.utc) + timedelta(seconds=Gate.RETRY)
            with contextlib.suppress(JobLookupError):  # removed meanwhile
                self._scheduler.modify_job(job_id, next_run_time=later)
            return
        try:
            runner()
        finally:
            self.gate.leave(target, unproven, failed)

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._runners.pop(job_id, None)
        with contextlib.suppress(JobLookupError):  # removed twice
            self._scheduler.remove_job(job_id)

    def every(self, job_id: str, seconds: float, func: Callable[[], None]) -> None:
        """A housekeeping task (reload checks, idle targets), not a collection."""
        self._scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            executor="housekeeping",
            replace_existing=True,
        )

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
