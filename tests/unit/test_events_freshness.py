"""The exporter process with its event stream, against the stand-in engine: an event
brings a collection long before --collect.interval, a storm stays bounded by the
debounce, and a stalled stream never holds the inventory."""

from __future__ import annotations

import copy
import time

import pytest

from tests.support.fake_engine import evented_engine
from tests.support.paths import load
from tests.support.promql import value

NEW_ID = "5555555555550000000000000000000000000000000000000000000000000000"
SLOW = ("--collect.interval", "60s", "--collect.disk-usage-interval", "0")


@pytest.fixture
def fake():
    engine, feed = evented_engine()
    yield engine, feed
    feed.close()
    engine.close()


def with_new_container() -> list[dict[str, object]]:
    containers = load("synthetic/containers-1.52.json")
    new = copy.deepcopy(containers[0])
    new.update(Id=NEW_ID, Names=["/fresh"], State="running", Status="Up 1 second")
    return [*containers, new]


def test_a_run_shows_long_before_the_interval(fake, run_exporter):
    engine, feed = fake
    exp = run_exporter("--docker.host", engine.url, *SLOW)
    exp.wait_for(lambda s: value(s, "docker_exporter_events_stream_up") == 1.0)
    assert engine.count("/containers/json") == 1
    engine.set("/containers/json", with_new_container())
    started = time.monotonic()
    feed.emit(feed.event("create", NEW_ID, name="fresh"), feed.event("start", NEW_ID))
    s = exp.wait_for(
        lambda s: value(s, "docker_container_state", name="fresh", state="running") == 1.0,
        timeout=20,
    )
    print(f"docker run to /metrics on the stand-in: {time.monotonic() - started:.2f}s")
    assert engine.count("/containers/json") == 2  # one collection for the two events
    assert value(s, "docker_container_restarts_total", name="fresh") == 0.0
    assert value(s, "docker_events_total", type="container", action="create") == 1.0
    # docker rm -f
    engine.set("/containers/json", load("synthetic/containers-1.52.json"))
    feed.emit(feed.event("kill", NEW_ID), feed.event("die", NEW_ID, exitCode=137))
    feed.emit(feed.event("destroy", NEW_ID))
    s = exp.wait_for(
        lambda s: value(s, "docker_container_state", name="fresh", state="running") is None
    )
    assert value(s, "docker_container_restarts_total", name="fresh") is None
    assert value(s, "docker_container_last_exit_code", name="fresh") is None


def test_a_storm_brings_collections_bounded_by_the_debounce(fake, run_exporter):
    engine, feed = fake
    exp = run_exporter("--docker.host", engine.url, *SLOW)
    exp.wait_for(lambda s: value(s, "docker_exporter_events_stream_up") == 1.0)
    started = time.monotonic()
    for _ in range(20):
        feed.emit(*[feed.event("start", NEW_ID, name="fresh") for _ in range(100)])
        time.sleep(0.05)
    exp.wait_for(
        lambda s: value(s, "docker_events_total", type="container", action="start") == 2000.0
    )
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # the last window's collection
    lists = engine.count("/containers/json") - 1
    print(f"storm of 2000 events over {elapsed:.2f}s: {lists} collections")
    # the debounce window is 1s: at most one per started second, plus the one that follows
    assert 1 <= lists <= int(elapsed) + 2


def test_a_stalled_stream_never_holds_the_inventory(fake, run_exporter):
    engine, feed = fake
    feed.stall = True
    exp = run_exporter("--docker.host", engine.url, "--collect.interval", "2s")
    s = exp.wait_for(
        lambda s: (
            (value(s, "docker_exporter_collection_success", collector="inventory") or 0)
            and (value(s, "docker_exporter_last_success_timestamp_seconds", collector="inventory"))
        ),
        timeout=30,
    )
    assert value(s, "docker_up") == 1.0
    assert value(s, "docker_containers", state="running") == 1.0
    s = exp.wait_for(lambda s: value(s, "docker_exporter_events_stream_up") is not None)
    assert value(s, "docker_exporter_events_stream_up") == 0.0
    exp.wait_until(
        lambda: "event stream: GET /events: no answer within 5s; reconnecting" in exp.log(),
        what="the stream's one line",
    )
    with feed.cond:
        feed.stall = False
        feed.cond.notify_all()
    exp.wait_for(lambda s: value(s, "docker_exporter_events_stream_up") == 1.0)


def test_no_stream_with_no_collect_events(fake, run_exporter):
    engine, _ = fake
    exp = run_exporter("--docker.host", engine.url, "--no-collect.events", *SLOW)
    s = exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    assert value(s, "docker_exporter_events_stream_up") is None
    assert value(s, "docker_container_restarts_total", name="web-1") is None
    assert engine.count("/events") == 0
