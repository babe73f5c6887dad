"""The state: one result slot per job, each swapped whole when its job publishes."""

from __future__ import annotations

import threading
from dataclasses import replace

from exporter.state import JobStatus, Result, State
from tests.support.inventory import synthetic_disk_usage, synthetic_inventory

OK = JobStatus(success=True, duration=0.5, last_success=1.0)


def test_a_new_state_has_every_scheduled_job_and_no_data():
    state = State(disk_usage=True)
    view = state.view()
    assert dict(view.jobs) == {"inventory": JobStatus(), "disk_usage": JobStatus()}
    assert (view.engine_up, view.inventory, view.disk_usage, view.container_sizes) == (
        False,
        None,
        None,
        None,
    )
    assert state.ready is False
    assert list(State(disk_usage=False, container_sizes=True).view().jobs) == [
        "inventory",
        "container_sizes",
    ]


def test_publish_swaps_a_new_result_and_leaves_the_old_one_intact():
    state = State()
    before = state.inventory.result
    snap = synthetic_inventory()
    state.inventory.publish(lambda _: OK, snap)
    after = state.inventory.result
    assert after is not before
    assert after == Result(replace(OK, attempted=True), snap)
    assert before == Result(JobStatus(), None)
    assert state.view().engine_up is True


def test_only_the_inventory_makes_the_exporter_ready():
    state = State()
    state.disk_usage.publish(lambda _: OK, synthetic_disk_usage())
    assert state.ready is False
    state.inventory.publish(lambda s: replace(s, failures=s.failures + 1), None)
    assert state.ready is True  # a failed first attempt also ends the wait


def test_publishing_none_drops_the_jobs_data_and_keeps_the_others():
    state = State()
    inventory, disk = synthetic_inventory(), synthetic_disk_usage()
    state.inventory.publish(lambda _: OK, inventory)
    state.disk_usage.publish(lambda _: OK, disk)
    state.disk_usage.publish(lambda s: replace(s, success=False, failures=s.failures + 1), None)
    view = state.view()
    assert (view.inventory, view.disk_usage, view.jobs["disk_usage"].failures) == (
        inventory,
        None,
        1,
    )


def test_drop_forgets_the_data_and_keeps_the_counts():
    state = State()
    state.inventory.publish(lambda _: replace(OK, failures=2), synthetic_inventory())
    state.drop()
    view = state.view()
    assert view.inventory is None and view.engine_up is False
    assert view.jobs["inventory"].failures == 2


def test_concurrent_skips_and_publishes_lose_no_count():
    state = State()
    snap = synthetic_inventory()

    def skip() -> None:
        for _ in range(500):
            state.inventory.count_skip()

    def publish() -> None:
        for _ in range(500):
            state.inventory.publish(lambda s: JobStatus(success=True, skipped=s.skipped), snap)

    threads = [threading.Thread(target=f) for f in (skip, skip, publish)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state.inventory.result.status.skipped == 1000
