"""Benchmark: big hosts on a stand-in engine, side by side with a static server of the same bytes.

Run (about 15 minutes on an idle 2-core machine):

    .venv/bin/python -m tests.bench_scale

The issue-17 cost figures alone (5k images, 10k containers, 5 events/s, about 4 minutes):

    .venv/bin/python -m tests.bench_scale --sizes 5000x10000 --fleet 0

Options: ``--sizes 1000x1000,5000x10000,10000x50000`` (images x containers),
``--scrapers 1,4,16``, ``--seconds 10`` per measurement, ``--interval 3`` (collection
interval, short so that every measurement overlaps several collections), ``--accept
openmetrics-gzip`` (what Prometheus asks for) or ``text`` (what curl gets),
``--events-per-second 5``, ``--cpu-seconds 60``, ``--cpu-interval 15``, ``--storm-rate
1000``, ``--storm-seconds 30`` (0 skips it), ``--fleet 100x500`` (targets x containers, 0
skips it), ``--fleet-interval 15``, ``--fleet-hanging 10``, ``--json``.

The stand-in engine also serves ``GET /events`` as Docker does (one JSON object per line,
streamed): container ``start`` and ``die`` events, ``--events-per-second`` of them, each
naming a container it lists, whose state in its next ``/containers/json`` answer changes
accordingly.

For each size, in one run:

- **one collection**, measured in a process of its own that builds the exporter's own
  objects from the same flags: CPU and wall time from the first byte fetched to the bytes
  ready to serve (OpenMetrics, gzip: Prometheus's request), for the first collection
  (cold: every line formatted) and the following ones (warm: unchanged objects reused);
- **the same answers fetched and json.loads-ed alone**, in the same process;
- **scrapes** of the real exporter process (collecting every ``--interval``), with 1, 4
  and 16 concurrent scrapers (each a process, scraping back to back), **interleaved** with
  scrapes of a static server that serves the exporter's own bytes through the same HTTP
  server code: each scraper alternates between the two, so both share the machine's noise;
  p50, p99 and max of each; the exporter's CPU meanwhile;
- the exporter's **peak RSS** (VmHWM, /proc/PID/status) and its **engine requests per
  collection**;
- **the steady phase**: a fresh exporter collecting every ``--cpu-interval`` (15 s) and
  scraped as often, for ``--cpu-seconds``: its CPU (% of one core, utime + stime from
  /proc/PID/stat over the phase) and peak RSS;
- **the storm**: ``--storm-rate`` events per second for ``--storm-seconds`` on that
  exporter, then none: collections in the storm, peak RSS before and after, and how long
  until the exporter shows as many running containers as the engine lists.

Then **the fleet case**: one exporter with ``--config.file`` and 100 stand-in engines of 50
images and 500 containers each, 10 of which (``--fleet-hanging``) accept connections and
never answer: the same scrapes of one live target's ``/metrics?target=`` beside a static
server of its bytes, collections per live target in that time, the age of the oldest last
success among them, requests per target and collection, peak RSS and threads.

The stand-in engine serves answers shaped like a real engine's (compose labels, networks,
mounts): about 420 bytes per image and 1.3 KB per container.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import queue
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.support.process import exporter_command, free_port

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
ACCEPT = {
    "openmetrics-gzip": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
    "text": {"Accept": "*/*"},
}


# --- the stand-in engine ---------------------------------------------------------------------


def _hex_id(kind: str, i: int) -> str:
    """A digest-like ID, as an engine's: short IDs (their first 12) differ, as the CLI's do."""
    return hashlib.sha256(f"{kind}-{i}".encode()).hexdigest()


def _image_list(n_images: int, rnd: random.Random) -> list[dict[str, Any]]:
    images = []
    for i in range(n_images):
        dangling = i % 10 == 9
        repo = f"registry.example.com/team{i % 40}/app{i}"
        images.append({
            "Containers": -1, "Created": 1700000000 + i * 60, "Id": f"sha256:{_hex_id('image', i)}",
            "Labels": {"maintainer": "ci@example.com"}, "ParentId": "",
            "RepoDigests": [] if dangling else [f"{repo}@sha256:{rnd.getrandbits(256):064x}"],
            "RepoTags": [] if dangling else [f"{repo}:build-{i}"],
            "SharedSize": -1, "Size": 50_000_000 + i * 1000, "VirtualSize": 50_000_000 + i * 1000,
        })  # fmt: skip
    return images


def _container_list(n_images: int, n_containers: int, rnd: random.Random) -> list[dict[str, Any]]:
    containers = []
    for i in range(n_containers):
        image = i % max(n_images, 1)
        state = "running" if i % 10 == 0 else ("created" if i % 20 == 1 else "exited")
        status = {
            "running": "Up 2 hours (healthy)" if i % 30 == 0 else "Up 2 hours",
            "created": "Created",
            "exited": f"Exited ({i % 3}) 3 days ago",
        }[state]
        project = f"ci-{i // 5}"
        ref = (
            _hex_id("image", image)[:12]  # its tag moved on: the engine shows the ID
            if image % 10 == 9
            else f"registry.example.com/team{image % 40}/app{image}:build-{image}"
        )
        compose = "com.docker.compose"
        containers.append({
            "Id": _hex_id("container", i), "Names": [f"/{project}-svc{i % 5}-1"], "Image": ref,
            "ImageID": f"sha256:{_hex_id('image', image)}", "Command": "/entrypoint.sh run",
            "Created": 1700000000 + i * 30,
            "Ports": [] if state != "running" else [
                {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 30000 + i % 20000,
                 "Type": "tcp"}],
            "Labels": {
                f"{compose}.config-hash": f"{rnd.getrandbits(256):064x}",
                f"{compose}.container-number": "1", f"{compose}.depends_on": "",
                f"{compose}.oneoff": "False", f"{compose}.project": project,
                f"{compose}.project.config_files": f"/builds/{project}/docker-compose.yml",
                f"{compose}.project.working_dir": f"/builds/{project}",
                f"{compose}.service": f"svc{i % 5}", f"{compose}.version": "2.24.6",
            },
            "State": state, "Status": status, "HostConfig": {"NetworkMode": f"{project}_default"},
            "NetworkSettings": {"Networks": {f"{project}_default": {
                "MacAddress": "", "NetworkID": "", "EndpointID": "", "Gateway": "",
                "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DriverOpts": None}}},
            "Mounts": [{"Type": "bind", "Source": f"/builds/{project}", "Destination": "/src",
                        "Mode": "", "RW": True, "Propagation": "rprivate"}],
        })  # fmt: skip
    return containers


VERSION = {
    "Version": "27.3.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux",
    "Arch": "amd64", "KernelVersion": "6.1.0", "Components": [{"Name": "Engine"}],
}  # fmt: skip


class Host:
    """The stand-in engine's state: static answers, plus containers that start and die.

    Each container's JSON is kept apart, so an event re-encodes one container and a list
    joins the parts (a few ms at 10k containers), never re-encodes the whole answer.
    """

    def __init__(self, n_images: int, n_containers: int, seed: int = 0) -> None:
        rnd = random.Random(seed)
        self.static = {
            "/version": json.dumps(VERSION).encode(),
            "/info": json.dumps({"DockerRootDir": "/var/lib/docker",
                                 "Driver": "overlay2"}).encode(),
            "/_ping": b"OK",
            "/images/json": json.dumps(_image_list(n_images, rnd)).encode(),
        }  # fmt: skip
        self.containers = _container_list(n_images, n_containers, rnd)
        self.parts = [json.dumps(c).encode() for c in self.containers]
        self.position = {c["Id"]: i for i, c in enumerate(self.containers)}
        self.lock = threading.Lock()
        self.subscribers: list[queue.Queue[bytes]] = []
        self.rate = 0.0  # container events per second
        self.events = 0  # sent since start
        self.next = 0  # the container the next event is about
        self._sender: threading.Thread | None = None
        self.sending = threading.Lock()  # held while a tick's events are sent

    def set_rate(self, events_per_second: float) -> None:
        """From now on: once this returns, no event of the previous rate is still sent."""
        with self.sending:
            self.rate = events_per_second
        if events_per_second and self._sender is None:
            self._sender = threading.Thread(target=self.run_events, daemon=True)
            self._sender.start()

    def body(self, path: str, query: str = "") -> bytes | None:
        if path == "/containers/json":
            # filters={"id": [...]}: the listed IDs only, as the engine matches them
            filters = json.loads(parse_qs(query).get("filters", ["{}"])[0])
            ids = filters.get("id")
            with self.lock:
                if ids and all(i in self.position for i in ids):
                    # full IDs (what the exporter asks): found as the engine finds them, by
                    # its index, and listed in list order
                    parts = [self.parts[i] for i in sorted(self.position[i] for i in ids)]
                elif ids:
                    parts = [p for c, p in zip(self.containers, self.parts)
                             if any(i in c["Id"] for i in ids)]  # fmt: skip
                else:
                    parts = list(self.parts)
            return b"[" + b",".join(parts) + b"]"
        return self.static.get(path)

    def running(self) -> int:
        with self.lock:
            return sum(1 for c in self.containers if c["State"] == "running")

    def event(self) -> None:
        """The next container starts (when it is not running) or dies (when it is), as
        Docker reports it on /events and in its next list."""
        if not self.containers:
            return
        now = time.time()
        with self.lock:
            i = self.next % len(self.containers)
            self.next += 1
            c = self.containers[i]
            if c["State"] == "running":
                code = i % 3
                action = "die"
                c["State"], c["Status"] = "exited", f"Exited ({code}) Less than a second ago"
                attributes = {"exitCode": str(code)}
            else:
                action = "start"
                c["State"], c["Status"] = "running", "Up Less than a second"
                attributes = {}
            self.parts[i] = json.dumps(c).encode()
            self.events += 1
            subscribers = list(self.subscribers)
        attributes.update(image=c["Image"], name=c["Names"][0][1:], **c["Labels"])
        line = json.dumps({
            "status": action, "id": c["Id"], "from": c["Image"], "Type": "container",
            "Action": action, "Actor": {"ID": c["Id"], "Attributes": attributes},
            "scope": "local", "time": int(now), "timeNano": int(now * 1e9),
        }, separators=(",", ":")).encode() + b"\n"  # fmt: skip
        for q in subscribers:
            with contextlib.suppress(queue.Full):  # a reader that stalls loses events
                q.put_nowait(line)

    def run_events(self) -> None:
        """Events at ``self.rate`` per second, in ticks of at most 10 ms."""
        due = time.monotonic()
        owed = 0.0
        while True:
            rate = self.rate
            tick = 0.01 if rate > 100 else (1.0 / rate if rate else 0.1)
            due += tick
            time.sleep(max(0.0, due - time.monotonic()))
            with self.sending:
                owed += self.rate * tick
                while owed >= 1:
                    owed -= 1
                    self.event()


def lists(counts: Counter[str]) -> int:
    """Inventory collections in ``counts``: full lists, and lists of the containers events
    named (a collection either way)."""
    return counts["/containers/json"] + counts["/containers/json (by id)"]


def engine_server(host: Host, hang: bool = False) -> ThreadingHTTPServer:
    """A stand-in engine: ``host``'s answers per path (after any /vX.Y prefix), requests
    counted; ``/events`` streams its container events, as Docker does (one JSON object per
    line, chunked). A hanging one accepts connections and never answers (but ``/_bench/*``).
    ``/_bench/requests``: the counts; ``/_bench/rate?eps=N``: N events per second from now;
    ``/_bench/host``: events sent and containers running."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # as Go's net/http (dockerd): no Nagle, so a body written after its headers is not
        # held for the client's delayed ACK (40 ms on Linux)
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def events(self) -> None:
            q: queue.Queue[bytes] = queue.Queue(maxsize=100_000)
            with host.lock:
                host.subscribers.append(q)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    line = q.get()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
            except OSError:
                pass  # the reader went away
            finally:
                with host.lock:
                    host.subscribers.remove(q)
                self.close_connection = True

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path.startswith("/v") and "/" in path[1:]:
                path = path[path.index("/", 1) :]
            body: bytes | None
            if path == "/_bench/requests":
                with lock:
                    body = json.dumps(counts).encode()
            elif path == "/_bench/rate":
                host.set_rate(float(query.partition("eps=")[2]))
                body = b"{}"
            elif path == "/_bench/host":
                body = json.dumps({"events": host.events, "running": host.running()}).encode()
            else:
                # a list of the containers events named is counted apart from a full list
                by_id = path == "/containers/json" and "filters=" in query
                with lock:
                    counts[path + (" (by id)" if by_id else "")] += 1
                if hang:
                    threading.Event().wait()
                if path == "/events":
                    return self.events()
                body = host.body(path, query)
            known = body is not None or path.startswith("/_bench")
            body = body if body is not None else b'{"message":"page not found"}'
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_engines(
    count: int,
    n_images: int,
    n_containers: int,
    port_file: str,
    hanging: int = 0,
    events_per_second: float = 0.0,
) -> None:
    """``count`` stand-in engines in this process, the first ``hanging`` of them hanging,
    each with ``events_per_second`` container events; their ports go to ``port_file``."""
    hosts = [Host(n_images, n_containers, seed=i) for i in range(count)]
    servers = [engine_server(host, hang=i < hanging) for i, host in enumerate(hosts)]
    for host in hosts:
        host.set_rate(events_per_second)
    Path(port_file).write_text(json.dumps([s.server_address[1] for s in servers]))
    threading.Event().wait()


# --- the static server -----------------------------------------------------------------------


def serve_static(body_file: str, content_type: str, encoding: str, port: int) -> None:
    """The exporter's bytes, served by the exporter's own HTTP server code, nothing else done."""
    from exporter.server import HTTPServer

    body = Path(body_file).read_bytes()
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if encoding:
        headers.append(("Content-Encoding", encoding))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", headers)
        return [body]

    # its bytes are always ready: answered on the loop, as the exporter's built variants are
    HTTPServer(app, "127.0.0.1", port, at_once=lambda environ: True).start()
    threading.Event().wait()


# --- scrapers --------------------------------------------------------------------------------


def _scrape_once(port: int, path: str, headers: dict[str, str]) -> float:
    t = time.perf_counter()
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200 or not body:
        raise SystemExit(f"scrape of 127.0.0.1:{port}{path} answered {response.status}")
    return (time.perf_counter() - t) * 1000


def scrape(
    servers: list[tuple[str, int, str]], accept: str, start: float, end: float, first: int
) -> None:
    """Scrape back to back from ``start`` to ``end`` (epoch seconds), one server after the
    other in turn (``first`` begins), so that all share the machine's noise; print each
    one's latencies in ms."""
    headers = ACCEPT[accept]
    latencies: dict[str, list[float]] = {name: [] for name, _, _ in servers}
    time.sleep(max(0.0, start - time.time()))
    turn = first
    while time.time() < end:
        name, port, path = servers[turn % len(servers)]
        latencies[name].append(_scrape_once(port, path, headers))
        turn += 1
    print(json.dumps(latencies))


def scrape_round(
    servers: list[tuple[str, int, str]], accept: str, scrapers: int, seconds: float
) -> dict[str, list[float]]:
    """``scrapers`` processes, each alternating between the ``servers`` (name, port,
    path), half of them starting with each; every server's latencies, sorted."""
    start = time.time() + 1.0
    procs = [
        subprocess.Popen(
            _role("scrape", json.dumps(servers), accept, str(start), str(start + seconds), str(i)),
            stdout=subprocess.PIPE,
        )
        for i in range(scrapers)
    ]
    latencies: dict[str, list[float]] = {name: [] for name, _, _ in servers}
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode:
            raise RuntimeError("a scraper failed")
        for name, values in json.loads(out).items():
            latencies[name] += values
    return {name: sorted(values) for name, values in latencies.items()}


def summary(latencies: list[float]) -> dict[str, float]:
    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "n": len(latencies),
        "p50": statistics.median(latencies),
        "p99": pct(0.99),
        "max": latencies[-1],
    }


# --- one collection, in a process of its own -------------------------------------------------


def _timed(fn: Any) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000


def _median(samples: list[tuple[float, float]], i: int) -> float:
    return statistics.median(s[i] for s in samples)


def measure_collection(engine: str, repeats: int) -> None:
    """Cold and warm collections, through the exporter's own objects built from its flags."""
    from exporter import cli
    from exporter.cli import parse_config
    from exporter.jobs import InventoryJob
    from exporter.target import Target

    # as the exporter's main() does (getattr: an older exporter measured with this benchmark
    # may lack some of them)
    for tune in ("tune_memory", "tune_threads"):
        getattr(cli, tune, lambda: None)()
    flags = ["--docker.host", engine, "--collect.disk-usage-interval", "0",
             "--collect.swarm-interval", "0"]  # fmt: skip
    target = Target(parse_config(flags, os.environ).target, process_metrics=True)
    (runner,) = target.runners
    job = runner.job
    assert isinstance(job, InventoryJob)
    exposition = target.exposition
    # as Target.start does (without it, a run of a stopped target closes its engine client),
    # but the runner is run here, not scheduled
    target.collecting = True
    job.client.engine()  # /version is read on connect and hourly: not part of a collection
    getattr(cli, "freeze_start_up", lambda: None)()
    counts_url = engine.replace("tcp://", "http://") + "/_bench/requests"

    def requests_made() -> int:
        with urllib.request.urlopen(counts_url, timeout=30) as response:
            return sum(json.loads(response.read()).values())

    before = requests_made()

    def collection() -> None:
        runner()
        # the bytes Prometheus asks for; after the first, each refresh builds them itself
        exposition.current.body(openmetrics=True, gzipped=True)

    cold = _timed(collection)
    status = target.state.inventory.result.status
    if not status.success:
        raise SystemExit(f"collection failed: {status.last_error}")
    warm = [_timed(collection) for _ in range(repeats)]
    print(json.dumps({
        "cold_cpu_ms": cold[0], "cold_wall_ms": cold[1],
        "warm_cpu_ms": _median(warm, 0), "warm_wall_ms": _median(warm, 1),
        "requests_per_collection": (requests_made() - before) / (repeats + 1),
        "exposition_bytes": len(exposition.current.body(openmetrics=True, gzipped=False)),
        "gzip_bytes": len(exposition.current.body(openmetrics=True, gzipped=True)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def measure_baseline(engine: str, repeats: int) -> None:
    """The same answers fetched, and fetched and json.loads-ed, alone in a fresh process."""
    import requests

    session = requests.Session()
    session.trust_env = False
    base = engine.replace("tcp://", "http://")

    def fetch() -> list[bytes]:
        return [
            session.get(f"{base}/v1.47/images/json").content,
            session.get(f"{base}/v1.47/containers/json", params={"all": "1"}).content,
        ]

    def fetch_and_load() -> None:
        for body in fetch():
            json.loads(body)

    fetch_only = [_timed(fetch) for _ in range(repeats)]
    fetch_load = [_timed(fetch_and_load) for _ in range(repeats)]
    print(json.dumps({
        "fetch_cpu_ms": _median(fetch_only, 0), "fetch_wall_ms": _median(fetch_only, 1),
        "fetch_load_cpu_ms": _median(fetch_load, 0), "fetch_load_wall_ms": _median(fetch_load, 1),
    }))  # fmt: skip


# --- the run ---------------------------------------------------------------------------------


def _role(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.bench_scale", "--role", *args]


def _wait(predicate: Any, what: str, timeout: float = 120.0, why: Any = lambda: "") -> Any:
    """``predicate()``'s first true answer; ``why()`` says what was seen last, on failure."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout:g}s (last: {last!r}) {why()}")


def _get(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    return out


def scrape_side_by_side(
    port: int, path: str, args: argparse.Namespace, tmp: Path, procs: list[Any]
) -> tuple[dict[str, dict[int, dict[str, float]]], bytes]:
    """Scrape ``path`` and a static server of its bytes, interleaved, with each scraper
    count."""
    headers = ACCEPT[args.accept]
    body, got = _get(f"http://127.0.0.1:{port}{path}", headers)
    body_file = tmp / "body"
    body_file.write_bytes(body)
    static_port = free_port()
    procs.append(
        subprocess.Popen(
            _role(
                "static",
                str(body_file),
                got["Content-Type"],
                got.get("Content-Encoding", ""),
                str(static_port),
            )
        )
    )
    _wait(lambda: _get(f"http://127.0.0.1:{static_port}/metrics", headers), "static server")
    scrapes: dict[str, dict[int, dict[str, float]]] = {"static": {}, "exporter": {}}
    servers = [("exporter", port, path), ("static", static_port, "/metrics")]
    for n in args.scrapers:
        for name, latencies in scrape_round(servers, args.accept, n, args.seconds).items():
            scrapes[name][n] = summary(latencies)
    return scrapes, body


class Processes:
    """The benchmark's child processes: stand-in engines, the exporter, scrapers; stopped
    (last started first) when the ``with`` block ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(10)

    def engines(
        self,
        port_file: Path,
        n_targets: int,
        n_images: int,
        n_containers: int,
        hanging: int = 0,
        events_per_second: float = 0.0,
    ) -> list[int]:
        """Start ``n_targets`` stand-in engines, the first ``hanging`` of them hanging, each
        with ``events_per_second`` container events; their ports."""
        counts = (n_targets, n_images, n_containers)
        self.procs.append(
            subprocess.Popen(
                _role(
                    "engines",
                    *map(str, counts),
                    str(port_file),
                    str(hanging),
                    str(events_per_second),
                )
            )
        )
        ports: list[int] = json.loads(
            _wait(lambda: port_file.exists() and port_file.read_text(), "engines")
        )
        return ports

    def exporter(self, log_path: Path, *flags: str) -> Exporter:
        port = free_port()
        log = open(log_path, "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*exporter_command(), f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        return Exporter(proc, port, log_path)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(10)
        self.procs.remove(proc)


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the exporter exited: {self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        """User and system CPU time so far (/proc/PID/stat utime + stime)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def series(self, name: str) -> float | None:
        """One unlabelled (or the first labelled) sample of ``name`` in /metrics, asked as
        Prometheus asks (another format would be rendered, and held, for the rest of the run)."""
        body, got = _get(f"http://127.0.0.1:{self.port}/metrics", ACCEPT["openmetrics-gzip"])
        if got.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        for line in text.splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
        return None

    def figures(self, body: bytes) -> dict[str, Any]:
        """Memory and threads from /proc now, and the size of one scrape's body."""
        status = _status(self.proc.pid)
        return {
            "peak_rss_mb": status["VmHWM"] / 1024,
            "rss_mb": status["VmRSS"] / 1024,
            "threads": status["Threads"],
            "body_bytes": len(body),
        }


def _cpu_window(
    exporter: Exporter, seconds: float, scrape_every: float, url: str, accept: str
) -> dict[str, float]:
    """The exporter's CPU over ``seconds``, scraped once every ``scrape_every`` seconds as
    one Prometheus would: % of one core."""
    cpu, wall = exporter.cpu_seconds(), time.monotonic()
    end = wall + seconds
    while time.monotonic() < end:
        _get(url, ACCEPT[accept])
        time.sleep(max(0.0, min(scrape_every, end - time.monotonic())))
    exporter.check_alive()
    return {"cpu_percent": 100 * (exporter.cpu_seconds() - cpu) / (time.monotonic() - wall)}


def bench_size(
    n_images: int, n_containers: int, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    with Processes() as procs:
        port_file = tmp / f"engine-{n_images}-{n_containers}"
        (engine_port,) = procs.engines(
            port_file, 1, n_images, n_containers, events_per_second=args.events_per_second
        )
        engine = f"tcp://127.0.0.1:{engine_port}"
        bench = f"http://127.0.0.1:{engine_port}/_bench"

        def counts() -> Counter[str]:
            return Counter(json.loads(_get(f"{bench}/requests", {})[0]))

        def host() -> dict[str, int]:
            figures: dict[str, int] = json.loads(_get(f"{bench}/host", {})[0])
            return figures

        collection = {}
        for role in ("baseline", "collect"):
            out = subprocess.run(
                _role(role, engine, str(args.repeats)),
                check=True,
                stdout=subprocess.PIPE,
                timeout=600,
            ).stdout
            collection.update(json.loads(out))

        def start_exporter(interval: float, log_name: str) -> Exporter:
            exporter = procs.exporter(
                tmp / log_name,
                "--docker.host", engine, "--collect.interval", f"{interval:g}s",
                "--collect.timeout", f"{interval / 2:g}s",
                "--collect.disk-usage-interval", "0", "--collect.swarm-interval", "0",
            )  # fmt: skip
            url = f"http://127.0.0.1:{exporter.port}/metrics"

            def up() -> bool:
                exporter.check_alive()
                body, got = _get(url, ACCEPT[args.accept])
                if got.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                return b"\ndocker_up 1.0\n" in body

            _wait(up, "exporter up", 300)
            return exporter

        # scrapes: a short collection interval, so that every round overlaps collections
        exporter = start_exporter(args.interval, "exporter.log")
        counts_before, cpu_before, started = counts(), exporter.cpu_seconds(), time.monotonic()
        scrapes, body = scrape_side_by_side(exporter.port, "/metrics", args, tmp, procs.procs)
        cpu_scraped = 100 * (exporter.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        during = counts()
        during.subtract(counts_before)
        collections = lists(during)
        result: dict[str, Any] = {
            "images": n_images,
            "containers": n_containers,
            "events_per_second": args.events_per_second,
            "collection": collection,
            "scrapes": scrapes,
            "exporter_collections": collections,
            "exporter_requests": {path: n for path, n in during.items() if n},
            "exporter_requests_per_collection": sum(during.values()) / max(collections, 1),
            "cpu_percent_while_scraped": cpu_scraped,
            **exporter.figures(body),
        }
        procs.stop(exporter.proc)

        # CPU and memory at a production interval, scraped as one Prometheus does
        if args.cpu_seconds <= 0:
            return result
        exporter = start_exporter(args.cpu_interval, "exporter-steady.log")
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        before = counts()
        steady = _cpu_window(exporter, args.cpu_seconds, args.cpu_interval, url, args.accept)
        steady_counts = counts()
        steady_counts.subtract(before)
        status = _status(exporter.proc.pid)
        result["steady"] = {
            "interval_s": args.cpu_interval,
            "seconds": args.cpu_seconds,
            "collections": lists(steady_counts),
            "peak_rss_mb": status["VmHWM"] / 1024,
            "rss_mb": status["VmRSS"] / 1024,
            **steady,
        }
        if args.storm_seconds <= 0:
            return result

        # a storm of events; then none, until the exporter shows what the engine lists
        before, events_before = counts(), host()["events"]
        _get(f"{bench}/rate?eps={args.storm_rate:g}", {})
        storm = _cpu_window(exporter, args.storm_seconds, args.cpu_interval, url, args.accept)
        _get(f"{bench}/rate?eps=0", {})
        storm_counts = counts()
        storm_counts.subtract(before)
        ended, running = time.monotonic(), host()["running"]

        seen: list[float | None] = []

        def shown() -> bool:
            exporter.check_alive()
            seen.append(exporter.series('docker_containers{state="running"}'))
            return seen[-1] == running

        _wait(
            shown,
            "the exporter showing the storm's last state",
            3 * args.cpu_interval + 60,
            lambda: f"the exporter showed {seen[-1:]} running, the engine lists {running}",
        )
        after = _status(exporter.proc.pid)
        result["storm"] = {
            "rate": args.storm_rate,
            "seconds": args.storm_seconds,
            "events": host()["events"] - events_before,
            "collections": lists(storm_counts),
            "peak_rss_mb_before": status["VmHWM"] / 1024,
            "peak_rss_mb_after": after["VmHWM"] / 1024,
            "rss_mb_after": after["VmRSS"] / 1024,
            "visible_after_s": time.monotonic() - ended,
            **storm,
        }
        _get(f"{bench}/rate?eps={args.events_per_second:g}", {})
        return result


def bench_fleet(
    n_targets: int, n_containers: int, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """One exporter, ``n_targets`` stand-in engines of 50 images and ``n_containers`` each,
    ``args.fleet_hanging`` of which accept connections and never answer."""
    import yaml

    hanging = args.fleet_hanging
    with Processes() as procs:
        ports = procs.engines(tmp / "fleet-engines", n_targets, 50, n_containers, hanging)
        names = [f"host-{i:03d}" for i in range(n_targets)]
        live_ports, live_names = ports[hanging:], names[hanging:]
        config = tmp / "fleet.yml"
        interval = args.fleet_interval
        config.write_text(
            yaml.safe_dump({
                "defaults": {"collect_interval": f"{interval:g}s",
                             "collect_timeout": f"{interval / 2:g}s",
                             "disk_usage_interval": "0", "swarm_interval": "0"},
                "targets": [{"name": n, "host": f"tcp://127.0.0.1:{p}"}
                            for n, p in zip(names, ports)],
            })
        )  # fmt: skip
        exporter = procs.exporter(
            tmp / "fleet.log", "--config.file", str(config), "--collect.workers", "16"
        )

        def own_series(name: str) -> dict[str, float]:
            """One of the exporter's own per-target series: target name -> value."""
            own = _get(f"http://127.0.0.1:{exporter.port}/metrics", {})[0].decode()
            found = {}
            for line in own.splitlines():
                if line.startswith(name + "{"):
                    target = line.split('target="', 1)[1].split('"', 1)[0]
                    found[target] = float(line.rsplit(" ", 1)[1])
            return found

        def all_up() -> bool:
            exporter.check_alive()
            up = own_series("docker_exporter_target_up")
            return len(up) == n_targets and sorted(t for t, v in up.items() if v) == live_names

        _wait(all_up, "every live target up", 300)

        def counts() -> list[Counter[str]]:
            return [
                Counter(json.loads(_get(f"http://127.0.0.1:{p}/_bench/requests", {})[0]))
                for p in live_ports
            ]

        before, started = counts(), time.monotonic()
        path = f"/metrics?target={live_names[0]}"
        scrapes, body = scrape_side_by_side(exporter.port, path, args, tmp, procs.procs)
        window = time.monotonic() - started
        per_target = []
        for after, was in zip(counts(), before):
            after.subtract(was)
            per_target.append(after)
        collections = [lists(c) for c in per_target]
        requests = sum(sum(c.values()) for c in per_target)
        now = time.time()
        last = own_series("docker_exporter_target_last_success_timestamp_seconds")
        return {
            "targets": n_targets,
            "hanging": hanging,
            "containers": n_containers,
            "interval_s": interval,
            "window_s": window,
            "collections_per_target_min": min(collections),
            "collections_per_target_max": max(collections),
            "requests_per_target_collection": requests / max(sum(collections), 1),
            "oldest_last_success_s": max(now - last[t] for t in live_names),
            "scrapes": scrapes,
            **exporter.figures(body),
        }


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}, "
        f"load average at start {load[0]:.2f}"
    )


def report(
    results: list[dict[str, Any]],
    fleet: dict[str, Any] | None,
    args: argparse.Namespace,
    where: str,
) -> str:
    lines = [
        f"Machine: {where}; scrapes ask for {args.accept}, {args.seconds:g} s per cell, "
        f"collection every {args.interval:g} s.",
        "",
        "| images / containers | scrapers | exporter p50 / p99 / max ms | "
        "static p50 / p99 / max ms | p99 ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for n in args.scrapers:
            e, s = r["scrapes"]["exporter"][n], r["scrapes"]["static"][n]
            lines.append(
                f"| {r['images']} / {r['containers']} | {n} | "
                f"{e['p50']:.1f} / {e['p99']:.1f} / {e['max']:.1f} | "
                f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} | {e['p99'] / s['p99']:.2f} |"
            )
    lines += [
        "",
        "| images / containers | collection CPU / wall ms (warm) | cold | "
        "fetch + json.loads CPU / wall ms | CPU ratio | peak RSS MB | requests per collection |"
        " exposition |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["collection"]
        lines.append(
            f"| {r['images']} / {r['containers']} | {c['warm_cpu_ms']:.0f} / "
            f"{c['warm_wall_ms']:.0f} | {c['cold_cpu_ms']:.0f} / {c['cold_wall_ms']:.0f} | "
            f"{c['fetch_load_cpu_ms']:.0f} / {c['fetch_load_wall_ms']:.0f} | "
            f"{c['warm_cpu_ms'] / c['fetch_load_cpu_ms']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['exporter_requests_per_collection']:.0f} | "
            f"{c['exposition_bytes'] / 1e6:.1f} MB ({c['gzip_bytes'] / 1e6:.2f} MB gzip) |"
        )
    steady = [r for r in results if "steady" in r]
    if steady:
        lines += [
            "",
            "| images / containers | events/s | interval | CPU % of a core | collections |"
            " peak RSS MB | while scraped: CPU % / peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in steady:
            st = r["steady"]
            lines.append(
                f"| {r['images']} / {r['containers']} | {r['events_per_second']:g} | "
                f"{st['interval_s']:g} s for {st['seconds']:g} s | {st['cpu_percent']:.1f} | "
                f"{st['collections']} | {st['peak_rss_mb']:.0f} | "
                f"{r['cpu_percent_while_scraped']:.0f} / {r['peak_rss_mb']:.0f} |"
            )
    storms = [r for r in results if "storm" in r]
    if storms:
        lines += [
            "",
            "| images / containers | storm | events sent | collections | CPU % | "
            "peak RSS MB before / after | RSS after | all shown after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in storms:
            st = r["storm"]
            lines.append(
                f"| {r['images']} / {r['containers']} | {st['rate']:g}/s for {st['seconds']:g} s"
                f" | {st['events']} | {st['collections']} | {st['cpu_percent']:.0f} | "
                f"{st['peak_rss_mb_before']:.0f} / {st['peak_rss_mb_after']:.0f} | "
                f"{st['rss_mb_after']:.0f} | {st['visible_after_s']:.1f} s |"
            )
    if fleet is not None:
        f = fleet
        lines += [
            "",
            f"Fleet: {f['targets']} targets of 50 images and {f['containers']} containers "
            f"({f['hanging']} of them hanging), collected every {f['interval_s']:g} s by 16 "
            "workers; scrapes of one live target's "
            f"/metrics?target= ({f['body_bytes'] / 1e3:.0f} kB).",
            "",
            "| scrapers | exporter p50 / p99 / max ms | static p50 / p99 / max ms | p99 ratio |",
            "|---|---|---|---|",
        ]
        for n in args.scrapers:
            e, s = f["scrapes"]["exporter"][n], f["scrapes"]["static"][n]
            lines.append(
                f"| {n} | {e['p50']:.1f} / {e['p99']:.1f} / {e['max']:.1f} | "
                f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} | {e['p99'] / s['p99']:.2f} |"
            )
        lines += [
            "",
            f"Collections per live target in {f['window_s']:.0f} s: "
            f"{f['collections_per_target_min']} to {f['collections_per_target_max']}; oldest "
            f"last success of a live target at the end: {f['oldest_last_success_s']:.1f} s; "
            "engine requests per target and collection:"
            f" {f['requests_per_target_collection']:.1f}; peak RSS {f['peak_rss_mb']:.0f} MB;"
            f" threads {f['threads']}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench_scale", description=__doc__)
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="1000x1000,5000x10000,10000x50000")
    p.add_argument("--scrapers", default="1,4,16")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=5, help="warm collections measured")
    p.add_argument("--accept", choices=sorted(ACCEPT), default="openmetrics-gzip")
    p.add_argument("--fleet", default="100x500", help="targets x containers; 0 skips it")
    p.add_argument("--fleet-interval", type=float, default=15.0)
    p.add_argument("--fleet-hanging", type=int, default=10, help="fleet engines that never answer")
    p.add_argument(
        "--events-per-second",
        type=float,
        default=5.0,
        help="container events (start, die) per second on each stand-in engine",
    )
    p.add_argument(
        "--cpu-seconds",
        type=float,
        default=60.0,
        help="the steady phase (CPU, memory) after the scrapes; 0 skips it",
    )
    p.add_argument(
        "--cpu-interval",
        type=float,
        default=15.0,
        help="collection and scrape interval of the steady phase",
    )
    p.add_argument("--storm-rate", type=float, default=1000.0, help="events per second")
    p.add_argument("--storm-seconds", type=float, default=30.0, help="0 skips the storm")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = p.parse_args(argv)
    if args.role:
        role, *rest = args.role
        if role == "engines":
            serve_engines(
                int(rest[0]), int(rest[1]), int(rest[2]), rest[3], int(rest[4]), float(rest[5])
            )
        elif role == "static":
            serve_static(rest[0], rest[1], rest[2], int(rest[3]))
        elif role == "scrape":
            servers = [tuple(s) for s in json.loads(rest[0])]
            scrape(servers, rest[1], float(rest[2]), float(rest[3]), int(rest[4]))
        elif role == "collect":
            measure_collection(rest[0], int(rest[1]))
        elif role == "baseline":
            measure_baseline(rest[0], int(rest[1]))
        return
    args.scrapers = [int(n) for n in args.scrapers.split(",")]
    where = machine()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            n_images, n_containers = (int(n) for n in size.split("x"))
            results.append(bench_size(n_images, n_containers, args, Path(tmp)))
            print(f"{size}: done", file=sys.stderr, flush=True)
        fleet = None
        if args.fleet != "0":
            n_targets, n_containers = (int(n) for n in args.fleet.split("x"))
            fleet = bench_fleet(n_targets, n_containers, args, Path(tmp))
    if args.json:
        print(json.dumps({"sizes": results, "fleet": fleet}, indent=1))
    print(report(results, fleet, args, where))


if __name__ == "__main__":
    main()
