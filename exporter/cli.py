"""Command line: flags in node_exporter style, start-up, and shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from typing import NoReturn

from . import __version__
from .config import FLAG_GROUPS, Config, ConfigError, Flag, from_flags
from .jobs import Scheduler
from .target import SingleTarget, Target
from .web import make_app, serve

log = logging.getLogger("exporter")

PROG = "docker-inventory-exporter"
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


class _Parser(argparse.ArgumentParser):
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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=LOG_LEVELS[level],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    # APScheduler logs every run at INFO and every skip at WARNING; the jobs log what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def healthcheck(host: str, port: int) -> int:
    """GET /-/healthy on the local exporter; 0 when it answers 200."""
    host = host if host and host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/-/healthy"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (OSError, ValueError) as exc:
        print(f"{PROG}: {url}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv, os.environ)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if config.healthcheck:
        return healthcheck(config.listen_host, config.listen_port)
    setup_logging(config.log_level)
    for warning in config.warnings:
        log.warning("%s", warning)

    scheduler = Scheduler(config.workers)
    target = Target(config.target, process_metrics=True)
    app = make_app(SingleTarget(target))
    try:
        server, _ = serve(app, config.listen_host, config.listen_port)
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {config.listen_host}:{config.listen_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    target.start(scheduler)
    scheduler.start()
    log.info(
        "listening on %s:%d, engine %s, jobs %s",
        config.listen_host or "*",
        config.listen_port,
        config.target.engine.display,
        ", ".join(job.name for job in target.jobs),
    )

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    log.info("shutting down")
    scheduler.shutdown()
    server.shutdown()
    # A job may still wait on a slow engine request (up to its timeout); its pool thread
    # would hold the interpreter's exit. Nothing it could still publish matters now.
    logging.shutdown()
    os._exit(0)


def run() -> NoReturn:
    sys.exit(main())
