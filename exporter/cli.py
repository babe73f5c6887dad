"""Command line: flags in node_exporter style, start-up, and shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import FLAG_GROUPS, Config, ConfigError, Flag, from_flags
from .fleet import Fleet
from .healthcheck import check, explicit, running_exporter_args
from .jobs import Scheduler
from .logs import setup_logging
from .registry import configure_shared_checker
from .registry_credentials import CredentialStore
from .registry_credentials import config_dir as credentials_dir
from .server import HTTPServer, Limits, connection_limit
from .target import SingleTarget, Target
from .web import answered_at_once, make_app
from .webconfig import BasicAuth, TLSReloader, WebConfig, load_web_config

log = logging.getLogger("exporter")

PROG = "docker-inventory-exporter"
# A collection allocates some 10^5 short-lived, acyclic objects per 10k containers, and
# CPython's default first GC generation (700 allocations) scans them hundreds of times:
# about 15% of a collection's CPU (tests/bench_scale.py). A larger one still collects
# cycles, in fewer passes.
GC_THRESHOLDS = (10_000, 10, 10)
# glibc gives each thread that allocates its own malloc arena (up to 8 per core); the job
# pool and the short-lived scrape threads then each keep freed memory of their own. Two
# arenas keep peak RSS some 5 MB lower at 10k containers (tests/bench_scale.py).
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt() parameter, glibc's malloc.h
# glibc raises its mmap threshold (up to 32 MB) each time a large block is freed, so the
# engine's answers (13 MB at 10k containers) end up inside the heap, which keeps them
# after use. A fixed threshold keeps every block this large in mmap, returned when freed.
MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3
# A thread that waits for the interpreter gets it after at most this long (CPython's
# default is 5 ms). During a collection at 10k containers a thread waited over 5 ms for it 35
# times, at 0.5 ms 2 to 4 times; with collections stepping aside for scrapes
# (exporter/priority.py), what a scrape still waits is mostly this interval, once, before its
# request is read: 0.1 ms cut the scrape p99 at 5k/10k by 10 to 25% (docs/scale-cost.md).
SWITCH_INTERVAL = 0.0001


def tune_memory() -> None:
    """Fewer GC passes, fewer malloc arenas and a fixed mmap threshold (glibc only;
    elsewhere the allocator stays as it is)."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): its allocator, as it is
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def tune_threads() -> None:
    """Scrapes get the interpreter soon while a collection runs."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def freeze_start_up() -> None:
    """What start-up made (modules, classes, functions, configuration: some 38k objects)
    lives as long as the process: no GC pass needs to scan it again (a full pass over it
    alone held the interpreter for 8 ms)."""
    gc.collect()
    gc.freeze()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse takes "-1s" for an option and reports a missing value; read anything
        # that starts with "-" and a digit as a value, so it gets a proper error.
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str) -> NoReturn:
        """One line and exit 2, instead of argparse's usage block."""
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def _add(group: argparse._ArgumentGroup, flag: Flag) -> None:
    if flag.boolean:
        group.add_argument(
            flag.name,
            dest=flag.dest,
            action=argparse.BooleanOptionalAction,
            default=flag.default,
            help=flag.help + ("" if flag.default is None else f" (default: {flag.default})"),
        )
    elif flag.default is False:
        group.add_argument(flag.name, dest=flag.dest, action="store_true", help=flag.help)
    else:  # None when not given: a default the code applies knows it was not chosen
        default = "" if flag.default is None else f" (default: {flag.default})"
        group.add_argument(
            flag.name,
            dest=flag.dest,
            choices=flag.choices or None,
            metavar=flag.metavar,
            help=flag.help + default,
        )


def build_parser() -> argparse.ArgumentParser:
    """Every flag from config.FLAG_GROUPS, in its group."""
    parser = _Parser(
        prog=PROG,
        description="Prometheus exporter for Docker image and container inventory.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for title, flags in FLAG_GROUPS.items():
        group = parser.add_argument_group(title)
        for flag in flags:
            _add(group, flag)
    return parser


def parse_config(argv: Sequence[str] | None, env: Mapping[str, str]) -> Config:
    """Flags and environment to a Config; ConfigError on any problem."""
    args = vars(build_parser().parse_args(argv))
    return from_flags(
        {flag: args[flag.dest] for flags in FLAG_GROUPS.values() for flag in flags}, env
    )


def healthcheck(argv: Sequence[str], config: Config, web: WebConfig) -> int:
    """Exit status 0 when the exporter answers /-/healthy, following its own flags."""
    if not explicit(argv):
        running = running_exporter_args()
        if running is not None:
            try:
                config = parse_config(running, os.environ)
                web = load_web_config(config.web_config_file) if config.web_config_file else web
            except ConfigError as exc:
                print(f"{PROG}: the running exporter's flags: {exc}", file=sys.stderr)
                return 1
    healthy, seen = check(config.listen_host, config.listen_port, web)
    if not healthy:
        print(f"{PROG}: {seen}", file=sys.stderr)
    return 0 if healthy else 1


def watch_fleet(fleet: Fleet, config: Config, scheduler: Scheduler) -> Callable[[], None]:
    """Reload when a watched file changes, stop idle targets (on-scrape); the SIGHUP action."""
    hup = threading.Event()

    def reloader() -> None:  # a reload reads files: not in the thread that waits for signals
        while True:
            hup.wait()
            hup.clear()
            try:
                fleet.reload("SIGHUP")
            except Exception:  # never the end of reloading: the next SIGHUP must work
                log.exception("reload (SIGHUP) failed")

    threading.Thread(target=reloader, name="reload", daemon=True).start()
    if config.watch_interval > 0:
        scheduler.every("watch-config", config.watch_interval, fleet.check)
    if config.collect_on_scrape:
        scheduler.every("stop-idle-targets", 1.0, fleet.stop_idle)
    return hup.set


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv, os.environ)
        web = load_web_config(config.web_config_file) if config.web_config_file else WebConfig()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if config.healthcheck:
        return healthcheck(sys.argv[1:] if argv is None else argv, config, web)
    setup_logging(config.log_level, config.log_format)
    tune_memory()
    tune_threads()
    for warning in config.warnings:
        log.warning("%s", warning)
    # one registry checker for every target: a tag shared by many hosts is asked once
    configure_shared_checker(
        config.registry_certs_dir, CredentialStore(credentials_dir(os.environ))
    )

    # The main thread waits for the signals; every other thread blocks them. (A Python
    # handler runs only when the main thread wakes, and the kernel may hand a signal to
    # any thread: a SIGHUP could wait for the next SIGTERM.)
    signals = {signal.SIGTERM, signal.SIGINT}
    if config.config_file is not None:
        signals.add(signal.SIGHUP)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    scheduler = Scheduler(config.workers)
    fleet: Fleet | None = None
    serving: Fleet | SingleTarget
    if config.config_file is not None:
        fleet = Fleet(config, scheduler, os.environ)
        try:
            fleet.load()
        except ConfigError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        serving = fleet
    else:
        target = Target(config.target, process_metrics=config.exporter_metrics)
        target.start(scheduler)
        serving = SingleTarget(target)
    app = make_app(serving, config.telemetry_path)
    limits = Limits(max_requests=config.max_requests, max_connections=connection_limit(1000))
    try:
        server = HTTPServer(
            app,
            config.listen_host,
            config.listen_port,
            limits,
            tls=TLSReloader(web.tls, log) if web.tls else None,
            auth=BasicAuth(web.users) if web.users else None,
            headers=web.headers,
            at_once=answered_at_once(serving, config.telemetry_path),
        )
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {config.listen_host}:{config.listen_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    freeze_start_up()
    server.start()
    on_hup: Callable[[], None] | None = None
    if fleet is None:
        log.info(
            "listening on %s:%d%s, engine %s, jobs %s",
            config.listen_host or "*",
            config.listen_port,
            " (TLS)" if web.tls else "",
            config.target.engine.display,
            ", ".join(job.name for job in target.jobs),
        )
    else:
        on_hup = watch_fleet(fleet, config, scheduler)
        log.info(
            "listening on %s:%d, %d targets from %s, %d workers%s",
            config.listen_host or "*",
            config.listen_port,
            len(fleet.targets),
            config.config_file,
            config.workers,
            ", collecting targets while they are scraped" if config.collect_on_scrape else "",
        )
    # The jobs start once "listening" is logged, so that it is always the log's first line:
    # started before, a job's first failure could come first on a busy machine.
    scheduler.start()

    while signal.sigwait(signals) == signal.SIGHUP:
        if on_hup is not None:
            on_hup()
    log.info("shutting down")
    scheduler.shutdown()
    server.shutdown()
    # A job may still wait on a slow engine request (up to its timeout); its pool thread
    # would hold the interpreter's exit. Nothing it could still publish matters now.
    logging.shutdown()
    os._exit(0)


def run() -> NoReturn:
    sys.exit(main())
