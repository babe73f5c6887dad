"""Jobs and their runner against a stand-in engine: failure, recovery, constant request count."""

from __future__ import annotations

import logging
import time

import pytest

from exporter.config import EngineConfig
from exporter.engine import EngineClient
from exporter.jobs import DiskUsageJob, InventoryJob, Runner
from exporter.metrics import DISK_RESOURCES
from exporter.state import State
from tests.support.fake_engine import FakeEngine
from tests.support.paths import load


def answers(n_containers: int = 4) -> dict[str, object]:
    containers = load("synthetic/containers-1.52.json")
    many = [dict(containers[i % 4], Id=f"{i:064x}", Names=[f"/c{i}"]) for i in range(n_containers)]
    return {
        "/version": load("synthetic/version-1.52.json"),
        "/images/json": load("synthetic/images-1.52.json"),
        "/containers/json": many,
        "/system/df": load("synthetic/system_df-1.52.json"),
    }


@pytest.fixture
def fake():
    engine = FakeEngine(answers())
    yield engine
    engine.close()


def runner(fake: FakeEngine, timeout: float = 2.0) -> tuple[Runner, State, list[int]]:
    state = State(("inventory", "disk_usage"))
    published: list[int] = []
    job = InventoryJob(EngineClient(EngineConfig(fake.url), timeout), ())
    return Runner(job, state, lambda: published.append(1)), state, published


def test_inventory_run_publishes_a_snapshot(fake):
    run, state, published = runner(fake)
    run()
    view = state.view
    assert view.ready and view.inventory is not None
    assert view.jobs["inventory"].success is True
    assert view.inventory.images_total == 4
    assert view.inventory.engine.api_version == "1.52"
    assert published == [1]


@pytest.mark.parametrize("n", [4, 400])
def test_requests_per_collection_do_not_grow_with_objects(n):
    engine = FakeEngine(answers(n))
    try:
        run, state, _ = runner(engine)
        for _ in range(3):
            run()
        assert state.view.inventory is not None and len(state.view.inventory.containers) == n
        # /version once per client, then two requests per collection whatever n is
        assert dict(engine.requests) == {"/version": 1, "/images/json": 3, "/containers/json": 3}
    finally:
        engine.close()


def test_failure_logged_once_per_cause_then_recovery(fake, caplog):
    caplog.set_level(logging.INFO, logger="exporter")
    run, state, _ = runner(fake)
    run()
    fake.set("/images/json", b"<html>proxy error</html>")
    for _ in range(3):
        run()
    status = state.view.jobs["inventory"]
    assert (status.success, status.errors) == (False, 3)
    assert state.view.inventory is None  # per-object data dropped, not served stale
    fake.set("/images/json", {"not": "a list"})
    run()
    fake.set("/images/json", load("synthetic/images-1.52.json"))
    run()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "inventory job: GET /images/json: the engine's answer is not valid JSON",
        "inventory job: /images/json answered dict, expected a list",
    ]
    # the engine's identity once (not again after reconnecting to the same engine)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "engine: Docker Engine 29.0.0, API 1.52",
        "inventory job: recovered",
    ]
    assert state.view.jobs["inventory"].success and state.view.jobs["inventory"].errors == 4
    assert not any(r.exc_info for r in caplog.records)


def test_http_errors_carry_the_engine_message(fake):
    run, state, _ = runner(fake)
    fake.answers.pop("/containers/json")
    run()
    assert state.view.jobs["inventory"].error == (
        "GET /containers/json: engine answered HTTP 404 page not found"
    )


def test_timeout_is_one_line_and_bounded(fake):
    fake.delays["/images/json"] = 5.0
    run, state, _ = runner(fake, timeout=0.3)
    started = time.monotonic()
    run()
    assert time.monotonic() - started < 2.0
    assert state.view.jobs["inventory"].error == "GET /images/json: no answer within 0.3s"


def test_engine_down_is_one_line():
    state = State(("inventory",))
    job = InventoryJob(EngineClient(EngineConfig("unix:///nonexistent/docker.sock"), 1.0), ())
    Runner(job, state, lambda: None)()
    assert state.view.jobs["inventory"].error == (
        "GET /version: cannot connect: No such file or directory"
    )
    assert state.view.ready


def test_disk_usage_asks_only_for_its_types_on_new_engines(fake):
    client = EngineClient(EngineConfig(fake.url), 2.0)
    state = State(("disk_usage",))
    Runner(DiskUsageJob(client, ("images", "build_cache"), 2.0), state, lambda: None)()
    assert state.view.disk_usage is not None
    assert set(state.view.disk_usage.resources) == {"images", "build_cache"}
    assert fake.queries[-1] == ("/system/df", "type=image&type=build-cache")


def test_disk_usage_on_old_engines_asks_for_everything(fake):
    fake.set("/version", dict(load("synthetic/version-1.52.json"), ApiVersion="1.41"))
    client = EngineClient(EngineConfig(fake.url), 2.0)
    state = State(("disk_usage",))
    Runner(DiskUsageJob(client, DISK_RESOURCES, 2.0), state, lambda: None)()
    assert fake.queries[-1] == ("/system/df", "")
    assert state.view.disk_usage is not None
    assert state.view.disk_usage.resources["volumes"].size == 800_000


def test_skips_counted_during_a_run_survive_its_publish(fake):
    """The scheduler counts skips exactly while a run is in flight; its publish keeps them."""
    state = State(("inventory",))
    job = InventoryJob(EngineClient(EngineConfig(fake.url), 2.0), ())
    collect = job.collect

    def collect_while_skipped(now: float):
        state.count_skip("inventory")  # what the scheduler's listener does meanwhile
        state.count_skip("inventory")
        return collect(now)

    job.collect = collect_while_skipped  # type: ignore[method-assign]
    Runner(job, state, lambda: None)()
    status = state.view.jobs["inventory"]
    assert (status.success, status.skipped) == (True, 2)
