"""Jobs and their runner against a stand-in engine: failure, recovery, constant request count."""

from __future__ import annotations

import logging
import os
import time

import pytest

from exporter.config import EngineConfig, JobSchedule
from exporter.engine import EngineClient
from exporter.jobs import DiskUsageJob, InventoryJob, Runner
from exporter.metrics import DISK_RESOURCES
from exporter.snapshot import InventorySnapshot
from exporter.state import State
from tests.support.fake_engine import FakeEngine
from tests.support.paths import load


def answers(n_containers: int = 4) -> dict[str, object]:
    containers = load("synthetic/containers-1.52.json")
    many = [dict(containers[i % 4], Id=f"{i:064x}", Names=[f"/c{i}"]) for i in range(n_containers)]
    return {
        "/version": load("synthetic/version-1.52.json"),
        "/info": load("docker-20.10/info.json"),
        "/images/json": load("synthetic/images-1.52.json"),
        "/containers/json": many,
        "/system/df": load("synthetic/system_df-1.52.json"),
    }


@pytest.fixture
def fake():
    engine = FakeEngine(answers())
    yield engine
    engine.close()


def inventory_job(host: str, state: State, timeout: float = 2.0) -> InventoryJob:
    client = EngineClient(EngineConfig(host), timeout)
    return InventoryJob(client, JobSchedule(15.0, timeout), state.inventory, ())


def df_job(
    fake: FakeEngine, state: State, resources: tuple[str, ...], data_root_fs: str = "off"
) -> DiskUsageJob:
    client = EngineClient(EngineConfig(fake.url), 2.0)
    return DiskUsageJob(client, JobSchedule(300.0, 2.0), state.disk_usage, resources, data_root_fs)


def runner(
    fake: FakeEngine, timeout: float = 2.0
) -> tuple[Runner[InventorySnapshot], State, list[int]]:
    state = State(disk_usage=True)
    published: list[int] = []
    job = inventory_job(fake.url, state, timeout)
    return Runner(job, lambda: published.append(1)), state, published


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_inventory_run_publishes_a_snapshot(fake):
    run, state, published = runner(fake)
    run()
    view = state.view()
    assert state.ready and view.inventory is not None
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
        inventory = state.view().inventory
        assert inventory is not None and len(inventory.containers) == n
        # /version and /info once per client, then two requests per collection whatever n is
        assert dict(engine.requests) == {
            "/version": 1,
            "/info": 1,
            "/images/json": 3,
            "/containers/json": 3,
        }
    finally:
        engine.close()


def test_failure_logged_once_per_cause_then_recovery(fake, caplog):
    caplog.set_level(logging.INFO, logger="exporter")
    run, state, _ = runner(fake)
    run()
    fake.set("/images/json", b"<html>proxy error</html>")
    for _ in range(3):
        run()
    status = state.view().jobs["inventory"]
    assert (status.success, status.failures) == (False, 3)
    assert state.view().inventory is None  # per-object data dropped, not served stale
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
        'engine: "Docker Engine" "29.0.0", API "1.52"',
        "inventory job: recovered",
    ]
    status = state.view().jobs["inventory"]
    assert status.success and status.failures == 4 and status.last_error is None
    assert not any(r.exc_info for r in caplog.records)


def test_http_errors_carry_the_engine_message(fake, caplog):
    run, state, _ = runner(fake)
    fake.answers.pop("/containers/json")
    run()
    assert state.view().jobs["inventory"].last_error == (
        "GET /containers/json: engine answered HTTP 404"
    )
    assert errors(caplog) == [
        'inventory job: GET /containers/json: engine answered HTTP 404 "page not found"'
    ]


def test_timeout_is_one_line_and_bounded(fake):
    fake.delays["/images/json"] = 60.0  # the fake answers when the test closes it
    run, state, _ = runner(fake, timeout=0.3)
    started = time.monotonic()
    run()
    assert time.monotonic() - started < 60.0  # it gave up, it did not wait for the answer
    assert state.view().jobs["inventory"].last_error == "GET /images/json: no answer within 0.3s"


def test_engine_down_is_one_line():
    state = State()
    Runner(inventory_job("unix:///nonexistent/docker.sock", state, 1.0), lambda: None)()
    assert state.view().jobs["inventory"].last_error == (
        "GET /version: cannot connect to /nonexistent/docker.sock: No such file or directory"
    )
    assert state.ready


def test_disk_usage_asks_only_for_its_types_on_new_engines(fake):
    state = State()
    Runner(df_job(fake, state, ("images", "build_cache")), lambda: None)()
    disk_usage = state.view().disk_usage
    assert disk_usage is not None
    assert set(disk_usage.resources) == {"images", "build_cache"}
    assert fake.queries[-1] == ("/system/df", "type=image&type=build-cache")


def test_disk_usage_on_old_engines_asks_for_everything(fake):
    fake.set("/version", dict(load("synthetic/version-1.52.json"), ApiVersion="1.41"))
    state = State()
    Runner(df_job(fake, state, DISK_RESOURCES), lambda: None)()
    assert fake.queries[-1] == ("/system/df", "")
    disk_usage = state.view().disk_usage
    assert disk_usage is not None
    assert disk_usage.resources["volumes"].size == 800_000


def test_skips_counted_during_a_run_survive_its_publish(fake):
    """The scheduler counts skips exactly while a run is in flight; its publish keeps them."""
    state = State()
    job = inventory_job(fake.url, state)
    collect = job.collect
    run = Runner(job, lambda: None)

    def collect_while_skipped(now: float):
        run.skipped()  # what the scheduler's listener does meanwhile
        run.skipped()
        return collect(now)

    job.collect = collect_while_skipped  # type: ignore[method-assign]
    run()
    status = state.view().jobs["inventory"]
    assert (status.success, status.skipped) == (True, 2)


def test_info_is_read_with_version_and_names_the_data_root(fake):
    client = EngineClient(EngineConfig(fake.url), 2.0)
    for _ in range(3):
        engine = client.engine()
    assert (engine.data_root, engine.storage_driver) == ("/tmp/inv-60a54ncp/data", "overlay2")
    assert (fake.count("/version"), fake.count("/info")) == (1, 1)
    # asked in the engine's API version, like every path but /version
    assert fake.queries == [("/version", ""), ("/info", "")]


def test_info_refused_costs_only_the_data_root(fake, caplog):
    caplog.set_level(logging.INFO, logger="exporter")
    fake.answers.pop("/info")  # a socket proxy that does not allow /info: HTTP 404 here
    run, state, _ = runner(fake)
    for _ in range(2):
        run()
    view = state.view()
    assert view.jobs["inventory"].success
    assert view.inventory is not None and view.inventory.engine.data_root == ""
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        'GET /info: engine answered HTTP 404 "page not found";'
        " the data root and storage driver are unknown"
    ]


def test_info_transport_failure_fails_the_run(fake):
    fake.set("/info", b"<html>proxy error</html>")
    run, state, _ = runner(fake)
    run()
    assert state.view().jobs["inventory"].last_error == (
        "GET /info: the engine's answer is not valid JSON"
    )


def test_disk_usage_measures_the_data_root_filesystem_where_told(fake, tmp_path):
    state = State(disk_usage=True)
    Runner(df_job(fake, state, DISK_RESOURCES, str(tmp_path)), lambda: None)()
    before = os.statvfs(tmp_path)
    disk_usage = state.view().disk_usage
    assert disk_usage is not None
    fs = disk_usage.data_root_fs
    assert fs is not None and fs.size == before.f_blocks * before.f_frsize
    assert 0 < fs.avail <= fs.size


def test_disk_usage_does_not_measure_a_remote_engines_data_root(fake, tmp_path):
    fake.set("/info", dict(load("docker-20.10/info.json"), DockerRootDir=str(tmp_path)))
    state = State(disk_usage=True)
    # the stand-in engine is tcp://: a path of that name here is another machine's disk
    Runner(df_job(fake, state, DISK_RESOURCES, "auto"), lambda: None)()
    disk_usage = state.view().disk_usage
    assert disk_usage is not None and disk_usage.data_root_fs is None


def test_unmeasurable_data_root_is_logged_once(fake, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="exporter")
    state = State(disk_usage=True)
    missing = str(tmp_path / "gone")
    run = Runner(df_job(fake, state, DISK_RESOURCES, missing), lambda: None)
    run()
    run()
    view = state.view()
    assert view.jobs["disk_usage"].success  # the df figures are still served
    assert view.disk_usage is not None and view.disk_usage.data_root_fs is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"disk_usage job: cannot measure the data root's filesystem at {missing}:"
        " No such file or directory"
    ]
