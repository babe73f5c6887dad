"""The state: one immutable view, swapped whole when a job publishes."""

from __future__ import annotations

import threading

from exporter.snapshot import JobStatus
from exporter.state import State
from tests.support.inventory import synthetic_disk_usage, synthetic_inventory

OK = JobStatus(success=True, duration=0.5, last_success=1.0)


def test_a_new_state_has_every_job_and_no_data():
    view = State(("inventory", "disk_usage")).view
    assert dict(view.jobs) == {"inventory": JobStatus(), "disk_usage": JobStatus()}
    assert (view.inventory, view.disk_usage, view.container_sizes, view.ready) == (
        None,
        None,
        None,
        False,
    )


def test_publish_swaps_a_new_view_and_leaves_the_old_one_intact():
    state = State(("inventory", "disk_usage"))
    before = state.view
    snap = synthetic_inventory()
    state.publish("inventory", lambda _: OK, snap)
    after = state.view
    assert after is not before
    assert (after.inventory, after.jobs["inventory"], after.ready) == (snap, OK, True)
    assert (before.inventory, before.jobs["inventory"], before.ready) == (None, JobStatus(), False)


def test_only_the_inventory_makes_the_exporter_ready():
    state = State(("inventory", "disk_usage"))
    state.publish("disk_usage", lambda _: OK, synthetic_disk_usage())
    assert state.view.ready is False
    state.publish("inventory", lambda s: JobStatus(errors=s.errors + 1), None)
    assert state.view.ready is True  # a failed first attempt also ends the wait


def test_publishing_none_drops_the_jobs_data_and_keeps_the_others():
    state = State(("inventory", "disk_usage"))
    inventory, disk = synthetic_inventory(), synthetic_disk_usage()
    state.publish("inventory", lambda _: OK, inventory)
    state.publish("disk_usage", lambda _: OK, disk)
    state.publish("disk_usage", lambda s: JobStatus(errors=s.errors + 1), None)
    view = state.view
    assert (view.inventory, view.disk_usage, view.jobs["disk_usage"].errors) == (inventory, None, 1)


def test_concurrent_skips_and_publishes_lose_no_count():
    state = State(("inventory",))
    snap = synthetic_inventory()

    def skip() -> None:
        for _ in range(500):
            state.count_skip("inventory")

    def publish() -> None:
        for _ in range(500):
            state.publish("inventory", lambda s: JobStatus(success=True, skipped=s.skipped), snap)

    threads = [threading.Thread(target=f) for f in (skip, skip, publish)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state.view.jobs["inventory"].skipped == 1000
