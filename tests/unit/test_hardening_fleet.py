"""Issue 20, items 2 and 12: a changed fleet leaks nothing, and a reload holds nobody up.

- a stopped Target closes its engine clients, without waiting for the garbage collector
  (their closures sat in reference cycles that only a full GC freed, sockets and all);
- scrapes of cold on-scrape targets and the idle stop never wait on a reload's reading
  and building: only on the brief swap;
- health and readiness are answered on the server's event loop, never behind workers that
  scrapes hold.
The whole-fleet figures (eight changes of 300 targets) are in tests/bench_hardening.py.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.cli import parse_config
from exporter.fleet import Fleet
from exporter.jobs import Scheduler
from exporter.server import HTTPServer, Limits
from exporter.web import make_app
from tests.support.fake_engine import FakeEngine, synthetic_engine
from tests.support.wait import wait_until


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = synthetic_engine()
    yield fake
    fake.close()


@pytest.fixture
def no_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The exporter raises the GC thresholds: a full collection is rare. Here, none (not
    even the one a reload asks for): the sockets must be closed, not collected."""
    gc.collect()
    monkeypatch.setattr("exporter.fleet.gc.collect", lambda: 0)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def write(path: Path, names: list[str], url: str) -> None:
    lines = ["defaults:", "  collect_interval: 1h", "  disk_usage_interval: 0", "targets:"]
    for name in names:
        lines += [f"  - name: {name}", f"    host: {url}"]
    path.write_text("\n".join(lines) + "\n")


def sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd, gone
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def collect_all(fleet: Fleet) -> None:
    for target in fleet.targets.values():
        for run in target.runners:
            run()
        assert target.state.inventory.result.status.success


def test_whole_fleet_changes_leave_no_sockets_behind(tmp_path, engine, no_gc):
    path = tmp_path / "fleet.yml"
    write(path, [f"a{i}" for i in range(8)], engine.url)
    config = parse_config(["--config.file", str(path)], {})
    fleet = Fleet(config, Scheduler(2), {})  # never started: the test runs the jobs
    fleet.load()
    collect_all(fleet)
    first = sockets()
    for round_ in range(1, 4):  # every target replaced by a new one, three times
        write(path, [f"r{round_}t{i}" for i in range(8)], engine.url)
        assert fleet.reload("test")
        collect_all(fleet)
        # (the stand-in engine's side of a connection closes as it sees the client's close)
        wait_until(
            lambda: sockets() <= first,
            5.0,
            what=f"round {round_}: {sockets()} sockets, {first} at first",
        )
    fleet.shutdown()
    wait_until(lambda: sockets() <= first - 16, 5.0, what="every connection closed at shutdown")


def test_a_run_in_flight_when_its_target_stops_closes_its_connection(tmp_path, engine, no_gc):
    path = tmp_path / "fleet.yml"
    write(path, ["a"], engine.url)
    fleet = Fleet(parse_config(["--config.file", str(path)], {}), Scheduler(1), {})
    fleet.load()
    before = sockets()
    target = fleet.targets["a"]
    target.collecting = False  # as stop() leaves it while the run below is in flight
    target.runners[0]()  # opens a connection, and publishes
    wait_until(lambda: sockets() == before, 5.0, what=f"{sockets()} sockets, {before} before")
    assert all(job.client._api is None for job in target.jobs)


def test_cold_scrapes_do_not_wait_on_a_reload(tmp_path, engine):
    path = tmp_path / "fleet.yml"
    write(path, ["a", "b"], engine.url)
    config = parse_config(["--config.file", str(path), "--collect.on-scrape"], {})
    scheduler = Scheduler(1)
    fleet = Fleet(config, scheduler, {})
    fleet.load()
    reading = threading.Event()
    release = threading.Event()
    original = fleet._load

    def slow_load():  # a reload stuck reading a file or building targets
        reading.set()
        release.wait(30)
        return original()

    fleet._load = slow_load  # type: ignore[method-assign]
    reload = threading.Thread(target=fleet.reload, args=("test",))
    reload.start()
    try:
        assert reading.wait(10)
        answered = []
        scrape = threading.Thread(target=lambda: answered.append(fleet.exposition("a")))
        scrape.start()
        scrape.join(10)
        assert answered == [fleet.targets["a"].exposition]  # answered while the reload waits
        assert fleet.targets["a"].collecting and fleet.ready() is False
    finally:
        release.set()
        reload.join(30)
        fleet.shutdown()


def test_health_and_readiness_never_wait_behind_held_workers():
    """Every worker and the whole --web.max-requests budget held by scrapes that wait (cold
    targets waiting on a reload, say): /-/healthy and /-/ready are still answered, while
    those scrapes are still waiting."""
    release = threading.Event()
    held = threading.Semaphore(0)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/metrics":
            held.release()
            release.wait(60)
        return make_app(Ready(), "/metrics")(environ, start_response)  # type: ignore[return-value]

    limits = Limits(workers=2, max_requests=2)
    server = HTTPServer(app, "127.0.0.1", 0, limits)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    scrapes = [
        threading.Thread(target=requests.get, args=(f"{base}/metrics",), kwargs={"timeout": 60})
        for _ in range(2)
    ]
    try:
        for thread in scrapes:
            thread.start()
        for _ in range(2):
            assert held.acquire(timeout=30), "a scrape never reached a worker"
        assert requests.get(f"{base}/metrics", timeout=30).status_code == 503  # budget spent
        for path, text in (("/-/healthy", "Healthy\n"), ("/-/ready", "Ready\n")):
            answer = requests.get(base + path, timeout=30)
            assert (answer.status_code, answer.text) == (200, text)
        assert all(thread.is_alive() for thread in scrapes)  # still held meanwhile
    finally:
        release.set()
        for thread in scrapes:
            thread.join(30)
        server.shutdown()


class Ready:
    description = "unix:///var/run/docker.sock"

    def exposition(self, target: str | None) -> None:
        return None

    def exposition_at_once(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def service_discovery(self) -> None:
        return None
