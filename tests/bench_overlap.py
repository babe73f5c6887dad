"""Benchmark: scrapes while collections run back to back, for several switch intervals.

Run (about a minute):

    .venv/bin/python -m tests.bench_overlap

Options: ``--size 5000x10000`` (images x containers), ``--switch 0.005,0.0005,0.0001``
(seconds; CPython's default is 0.005, the exporter sets 0.0005), ``--seconds 10``.

One stand-in engine (tests/bench_scale.py's, 5 container events per second), then, per
switch interval, a process of the exporter's own objects: its target collecting without a
pause (every scrape overlaps a collection: the worst case of a collection every interval) and
its HTTP server, scraped back to back by one scraper process for ``--seconds``: p50, p99 and
max, and the collections done meanwhile. Last, the same with no collection running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

from tests.bench_scale import ACCEPT, Processes, summary
from tests.support.process import free_port


def serve_and_collect(engine_port: int, switch: float, collect: bool, port: int) -> None:
    """The exporter's target and HTTP server in this process; collections back to back."""
    from exporter.cli import freeze_start_up, parse_config, tune_memory
    from exporter.server import HTTPServer
    from exporter.target import SingleTarget, Target
    from exporter.web import make_app

    tune_memory()
    sys.setswitchinterval(switch)
    flags = ["--docker.host", f"tcp://127.0.0.1:{engine_port}", "--collect.disk-usage-interval",
             "0"]  # fmt: skip
    target = Target(parse_config(flags, os.environ).target, process_metrics=True)
    (runner,) = target.runners
    runner()
    target.exposition.current.body(openmetrics=True, gzipped=True)
    freeze_start_up()
    HTTPServer(make_app(SingleTarget(target), "/metrics"), "127.0.0.1", port).start()
    collections = 0

    def loop() -> None:
        nonlocal collections
        while True:
            runner()
            collections += 1

    if collect:
        threading.Thread(target=loop, daemon=True).start()
    for _line in sys.stdin:  # "count": how many collections so far
        print(collections, flush=True)


def scrape(port: int, seconds: float) -> list[float]:
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics", headers=ACCEPT["openmetrics-gzip"])
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"scrape answered {response.status}")
        latencies.append((time.perf_counter() - t) * 1000)
    return sorted(latencies)


def measure(engine_port: int, switch: float, collect: bool, seconds: float) -> dict[str, float]:
    port = free_port()
    role = [sys.executable, "-m", "tests.bench_overlap", "--role", str(engine_port),
            str(switch), "1" if collect else "0", str(port)]  # fmt: skip
    proc = subprocess.Popen(role, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                HTTPConnection("127.0.0.1", port, timeout=5).connect()
                break
            except OSError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the exporter's objects did not serve: {exc}") from exc
                time.sleep(0.1)
        proc.stdin.write("count\n")
        proc.stdin.flush()
        before = int(proc.stdout.readline())
        latencies = scrape(port, seconds)
        proc.stdin.write("count\n")
        proc.stdin.flush()
        after = int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)
    return {**summary(latencies), "collections": after - before}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench_overlap", description=__doc__)
    p.add_argument("--role", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--size", default="5000x10000")
    p.add_argument("--switch", default="0.005,0.0005,0.0001")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    if args.role:
        engine_port, switch, collect, port = args.role
        serve_and_collect(int(engine_port), float(switch), collect == "1", int(port))
        return
    n_images, n_containers = (int(n) for n in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        (engine_port,) = procs.engines(
            Path(tmp) / "engine", 1, n_images, n_containers, events_per_second=5
        )
        for switch in (float(s) for s in args.switch.split(",")):
            rows.append((switch, True, measure(engine_port, switch, True, args.seconds)))
        rows.append((0.0005, False, measure(engine_port, 0.0005, False, args.seconds)))
    print(f"{n_images} images, {n_containers} containers; {args.seconds:g} s per row; "
          f"load average at the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    print()
    print("| switch interval | collections meanwhile | scrapes | p50 / p99 / max ms |")
    print("|---|---|---|---|")
    for switch, collect, r in rows:
        what = f"{switch * 1000:g} ms" + ("" if collect else ", no collection running")
        print(
            f"| {what} | {r['collections']:.0f} | {r['n']:.0f} | "
            f"{r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} |"
        )
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
