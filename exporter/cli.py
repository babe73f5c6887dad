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

from prometheus_client import CollectorRegistry, ProcessCollector

from . import __version__
from .collector import DockerCollector
from .config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Config,
    ConfigError,
    JobSchedule,
    parse_duration,
    parse_label_keys,
    parse_listen_address,
    parse_resources,
    resolve_engine,
)
from .exposition import Exposition
from .jobs import Runner, build_jobs, start_scheduler
from .metrics import DISK_RESOURCES, JOBS
from .state import State
from .web import make_app, serve

log = logging.getLogger("exporter")

PROG = "docker-inventory-exporter"
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
DEFAULT_LABELS = "com.docker.compose.project,com.docker.compose.service"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit 2, instead of argparse's usage block."""
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Prometheus exporter for Docker image and container inventory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--version", action="version", version=f"{PROG} {__version__}")
    add(
        "--web.listen-address",
        dest="listen",
        default=f":{DEFAULT_PORT}",
        help="address to serve /metrics on",
    )
    add(
        "--docker.host",
        dest="host",
        default=None,
        help=f"engine address, unix:///path or tcp://host:port (default: $DOCKER_HOST or "
        f"{DEFAULT_HOST})",
    )
    add(
        "--docker.tls-ca",
        dest="ca",
        default=None,
        help="CA file that signed the engine's certificate (default: $DOCKER_CERT_PATH/ca.pem "
        "when DOCKER_TLS_VERIFY is set)",
    )
    add("--docker.tls-cert", dest="cert", default=None, help="client certificate file")
    add("--docker.tls-key", dest="key", default=None, help="client key file")
    add(
        "--docker.tls-verify",
        dest="verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify the engine's certificate (default: on whenever a CA is known)",
    )
    add("--collect.interval", dest="interval", default="15s", help="inventory collection interval")
    add(
        "--collect.timeout",
        dest="timeout",
        default="5s",
        help="timeout of each inventory request to the engine",
    )
    add(
        "--collect.disk-usage-interval",
        dest="df_interval",
        default="5m",
        help="interval of the /system/df job (0 turns it off)",
    )
    add(
        "--collect.disk-usage-timeout",
        dest="df_timeout",
        default="2m",
        help="timeout of the /system/df request",
    )
    add(
        "--collect.disk-usage-resources",
        dest="df_resources",
        default=",".join(DISK_RESOURCES),
        help="resources the disk_usage job asks for (API 1.42+ computes only these)",
    )
    add(
        "--collect.container-sizes-interval",
        dest="sizes_interval",
        default="0",
        help="interval of the container size job (/containers/json?size=1, costly; 0 is off)",
    )
    add(
        "--collect.container-sizes-timeout",
        dest="sizes_timeout",
        default="2m",
        help="timeout of the container size request",
    )
    add(
        "--collect.per-image",
        dest="per_image",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export per-image series (off leaves the totals)",
    )
    add(
        "--collect.per-container",
        dest="per_container",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export per-container series (off leaves the totals)",
    )
    add(
        "--collect.container-labels",
        dest="labels",
        default=DEFAULT_LABELS,
        help="comma-separated container label keys exported on docker_container_labels",
    )
    add(
        "--healthcheck",
        action="store_true",
        help="check /-/healthy of the exporter serving on --web.listen-address and exit 0 when "
        "healthy, 1 otherwise (for a container HEALTHCHECK without curl)",
    )
    add(
        "--log.level",
        dest="log_level",
        default="info",
        choices=sorted(LOG_LEVELS),
        help="log level",
    )
    return p


def parse_config(argv: Sequence[str] | None, env: Mapping[str, str]) -> tuple[Config, str]:
    """Flags and environment to a Config and the log level; ConfigError on any problem."""
    args = build_parser().parse_args(argv)
    host, port = parse_listen_address(args.listen)
    engine, warnings = resolve_engine(env, args.host, args.ca, args.cert, args.key, args.verify)
    interval = parse_duration(args.interval, "--collect.interval")
    timeout = parse_duration(args.timeout, "--collect.timeout")
    if timeout >= interval:
        raise ConfigError(
            f"--collect.timeout ({args.timeout}) must be shorter than "
            f"--collect.interval ({args.interval})"
        )
    config = Config(
        listen_host=host,
        listen_port=port,
        engine=engine,
        inventory=JobSchedule(interval, timeout),
        disk_usage=JobSchedule(
            parse_duration(args.df_interval, "--collect.disk-usage-interval", allow_zero=True),
            parse_duration(args.df_timeout, "--collect.disk-usage-timeout"),
        ),
        container_sizes=JobSchedule(
            parse_duration(
                args.sizes_interval, "--collect.container-sizes-interval", allow_zero=True
            ),
            parse_duration(args.sizes_timeout, "--collect.container-sizes-timeout"),
        ),
        disk_usage_resources=parse_resources(args.df_resources),
        per_image=args.per_image,
        per_container=args.per_container,
        container_labels=parse_label_keys(args.labels),
        warnings=warnings,
        healthcheck=args.healthcheck,
    )
    return config, args.log_level


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=LOG_LEVELS[level],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    # APScheduler logs every run at INFO and every skip at WARNING; the jobs log what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def build_registry(config: Config, state: State) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        DockerCollector(state, config.per_image, config.per_container, config.label_names)
    )
    ProcessCollector(registry=registry)
    return registry


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
        config, level = parse_config(argv, os.environ)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if config.healthcheck:
        return healthcheck(config.listen_host, config.listen_port)
    setup_logging(level)
    for warning in config.warnings:
        log.warning("%s", warning)

    jobs = build_jobs(config)
    state = State(tuple(j for j in JOBS if any(job.name == j for job in jobs)))
    exposition = Exposition(build_registry(config, state))
    app = make_app(exposition, state, config.engine.display)
    try:
        server, _ = serve(app, config.listen_host, config.listen_port)
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {config.listen_host}:{config.listen_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    runners = [Runner(job, state, exposition.refresh) for job in jobs]
    scheduler = start_scheduler(config, runners, state, exposition.refresh)
    log.info(
        "listening on %s:%d, engine %s, jobs %s",
        config.listen_host or "*",
        config.listen_port,
        config.engine.display,
        ", ".join(j.name for j in jobs),
    )

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    log.info("shutting down")
    scheduler.shutdown(wait=False)
    server.shutdown()
    # A job may still wait on a slow engine request (up to its timeout); its pool thread
    # would hold the interpreter's exit. Nothing it could still publish matters now.
    logging.shutdown()
    os._exit(0)


def run() -> NoReturn:
    sys.exit(main())
