"""The fleet: the targets of --config.file, kept in step with the file and discovery.

``reload`` re-reads the file and the discovery sources and applies the difference: new
targets start, removed ones stop (their series are gone at the next scrape, their name
404s), and changed ones restart with fresh state. A bad edit keeps the running targets
and is logged once; a reload never exits. The fleet also answers the HTTP side: each
target's exposition by name, its own metrics on a plain /metrics, and /targets.

With ``collect_on_scrape``, a target is collected only while it is scraped: its first
scrape starts its jobs (and answers what a just-started exporter answers: docker_up 0,
no object series yet); it stops after going unscraped for three times the longer of its
collection interval and the gap between its last two scrapes.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector

from . import metrics as m
from .buildinfo import build_labels
from .collector import Family, family
from .config import Config, ConfigError, TargetConfig
from .configfile import Loaded, load
from .configtext import ECHO_CHARS, shorten
from .exposition import Exposition
from .jobs import Scheduler
from .registry import shared_checker
from .target import Target

log = logging.getLogger(__name__)

IDLE_INTERVALS = 3  # a target unscraped for this many intervals (or scrape gaps) stops


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a watched file or directory does (a missing one counts too)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(path), -1, -1, -1))
    return tuple(out)


class Fleet:
    def __init__(
        self,
        config: Config,
        scheduler: Scheduler,
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.config_file is not None
        self.path = config.config_file
        self.config = config
        self.scheduler = scheduler
        self.env = env
        self.clock = clock
        # one reload at a time (held while files are read and targets built: seconds)
        self._reload_lock = threading.Lock()
        # starting and stopping targets, and swapping the mapping whole (held briefly: a
        # scrape of a cold target and the idle stop take it, never the reload lock)
        self._lock = threading.Lock()
        self._targets: Mapping[str, Target] = MappingProxyType({})
        self._sources: Mapping[str, str] = MappingProxyType({})
        self._watched: tuple[Path, ...] = ()
        self._signature: tuple[tuple[str, int, int, int], ...] = ()
        self.reload_ok = False
        self._dropped = False  # the last reload replaced or removed targets
        self.reload_success_time: float | None = None
        self.self_exposition = Exposition([FleetCollector(self), ProcessCollector(registry=None)])
        # the exporter's own metrics are rendered at a scrape when a target has published
        # (or the fleet changed) since the last rendering, never more often
        self._generation = 0
        self._rendered_generation = 0
        self._render_lock = threading.Lock()

    # --- configuration -------------------------------------------------------------------

    @property
    def targets(self) -> Mapping[str, Target]:
        return self._targets

    def source(self, name: str) -> str:
        return self._sources.get(name, "")

    def _load(self) -> Loaded:
        """The file and its discovery sources; every failure is one ConfigError line.

        ``load`` turns every problem it knows into a ConfigError that names the field; one
        it does not know (a bug, or a file system that fails in a new way) must still end
        the same way: one line, the running targets kept, never a dead reload thread.
        """
        try:
            return load(self.path, self.config.target.settings, self.env)
        except ConfigError:
            raise
        except Exception as exc:
            problem = shorten(str(exc), 4 * ECHO_CHARS)
            raise ConfigError(
                f"{self.path}: cannot load: {type(exc).__name__}: {problem}"
            ) from None

    def load(self) -> None:
        """The first load: a problem raises ConfigError (the CLI exits 2)."""
        with self._reload_lock:
            self._apply(self._load())

    def reload(self, why: str) -> bool:
        """Re-read everything; on a problem keep the running targets and log one line."""
        with self._reload_lock:
            try:
                loaded = self._load()
            except ConfigError as exc:
                self.reload_ok = False
                self._changed()
                self._signature = _signature(self._watched)  # log a broken file once
                log.error("reload (%s) failed, the running targets stay: %s", why, exc)
                return False
            self._apply(loaded, why)
        if self._dropped:
            # the replaced targets' objects sit in reference cycles (runner -> target ->
            # runner); with the exporter's raised GC thresholds a full collection is rare,
            # so free them now: some 10 MB per 300 targets (tests/bench_hardening.py fleet)
            self._dropped = False
            gc.collect()
        return True

    def check(self) -> None:
        """The watch: reload when a watched file changed (called every watch interval)."""
        if _signature(self._watched) != self._signature:
            self.reload("a watched file changed")

    def _apply(self, loaded: Loaded, why: str | None = None) -> None:
        old = dict(self._targets)
        new: dict[str, Target] = {}
        added, changed, removed = [], [], []
        replaced: list[tuple[Target, Target]] = []  # (running, its successor)
        for config in loaded.targets:  # built outside the lock: scrapes go on meanwhile
            current = old.pop(config.name, None)
            if current is not None and current.config == config:
                new[config.name] = current
                continue
            target = self._build(config)
            if current is not None:
                changed.append(config.name)
                replaced.append((current, target))
            else:
                added.append(config.name)
            new[config.name] = target
        removed = list(old)
        self._dropped = bool(replaced or old)
        with self._lock:
            for current, target in replaced:
                collecting = current.collecting
                current.stop(self.scheduler, publish=False)  # served no more: not rendered
                if collecting or not self.config.collect_on_scrape:
                    target.start(self.scheduler)
            if not self.config.collect_on_scrape:
                for name in added:
                    new[name].start(self.scheduler)
            for target in old.values():
                target.stop(self.scheduler, publish=False)
            self._targets = MappingProxyType(new)
            self._sources = MappingProxyType(dict(loaded.sources))
            shared_checker().credentials.set_overrides(loaded.registry_credentials)
        self._watched = loaded.watched
        self._signature = _signature(loaded.watched)
        self.reload_ok = True
        self.reload_success_time = time.time()
        self._changed()
        for note in loaded.notes:
            log.warning("%s", note)
        summary = ", ".join(
            f"{what} {' '.join(names)}"
            for what, names in (("added", added), ("changed", changed), ("removed", removed))
            if names
        )
        if why is None:
            log.info("%s: %d targets: %s", self.path, len(new), " ".join(new) or "none")
        else:
            log.info("reloaded %s (%s): %s", self.path, why, summary or "no change")

    def _build(self, config: TargetConfig) -> Target:
        # process_* on every target too: the dashboard's exporter panels then work per engine
        # (they show the process that collects it)
        return Target(
            config, log_prefix=f"{config.name}: ", process_metrics=True, on_publish=self._changed
        )

    def _changed(self) -> None:
        self._generation += 1  # a lost increment under a race only delays a rendering

    def stop_idle(self) -> None:
        """Collect-on-scrape: stop targets nobody scrapes any more."""
        now = self.clock()
        for target in self._targets.values():
            if target.collecting and now - target.last_scraped > IDLE_INTERVALS * max(
                target.interval, target.scrape_gap
            ):
                with self._lock:  # not while a scrape starts it
                    if not target.collecting:
                        continue
                    log.info("%s: not scraped for a while, collection stops", target.name)
                    target.stop(self.scheduler)

    def shutdown(self) -> None:
        for target in self._targets.values():
            target.stop(self.scheduler, publish=False)

    # --- serving -------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"the engines named in {self.path}"

    def exposition(self, name: str | None) -> Exposition | None:
        if name is None:
            with self._render_lock:
                generation = self._generation
                if generation != self._rendered_generation:
                    self.self_exposition.refresh()
                    self._rendered_generation = generation
            return self.self_exposition
        target = self._targets.get(name)
        if target is None:
            return None
        target.scraped(self.clock())
        if not target.collecting:
            with self._lock:
                if not target.collecting and self._targets.get(name) is target:
                    log.info("%s: scraped, collection starts", name)
                    target.start(self.scheduler)
        return target.exposition

    def exposition_at_once(self) -> Exposition | None:
        return None  # its own exposition is refreshed when scraped; a target's has side effects

    def ready(self) -> bool:
        return all(t.state.ready for t in self._targets.values() if t.collecting)

    def service_discovery(self) -> bytes:
        groups = [
            {
                "targets": [name],
                "labels": {
                    "__meta_docker_inventory_source": self.source(name),
                    "__meta_docker_inventory_host": target.config.engine.display,
                },
            }
            for name, target in sorted(self._targets.items())
        ]
        return json.dumps(groups, indent=1).encode() + b"\n"


class FleetCollector(Collector):
    """The exporter's own series on a plain /metrics: build, reloads, each target's status."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Family]:
        build = family(m.BUILD_INFO)
        build.add_metric(build_labels(), 1.0)
        yield build
        ok = family(m.CONFIG_RELOAD_SUCCESS)
        ok.add_metric([], 1.0 if self.fleet.reload_ok else 0.0)
        yield ok
        if self.fleet.reload_success_time is not None:
            when = family(m.CONFIG_RELOAD_TIME)
            when.add_metric([], self.fleet.reload_success_time)
            yield when
        info, up, collecting, last = (
            family(m.TARGET_INFO),
            family(m.TARGET_UP),
            family(m.TARGET_COLLECTING),
            family(m.TARGET_LAST_SUCCESS),
        )
        for name, target in sorted(self.fleet.targets.items()):
            info.add_metric([name, target.config.engine.display, self.fleet.source(name)], 1.0)
            status = target.state.inventory.result.status
            up.add_metric([name], 1.0 if status.success else 0.0)
            collecting.add_metric([name], 1.0 if target.collecting else 0.0)
            if status.last_success is not None:
                last.add_metric([name], status.last_success)
        yield from (info, up, collecting, last)
