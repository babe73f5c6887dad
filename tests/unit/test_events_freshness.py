"""The exporter process with its event stream, against the stand-in engine: an event
brings a collection long before --collect.interval, a storm stays bounded by the
debounce, and a stalled stream never holds the inventory."""

from __future__ import annotations

import copy
import json
import threading
import time
from urllib.parse import parse_qs

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
    # which listed only the container they named; the images were not listed again
    assert listed_ids(engine)[-1] == [NEW_ID]
    assert engine.count("/images/json") == 1
    assert value(s, "docker_containers", state="running") == 2.0
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
    assert value(s, "docker_containers", state="running") == 1.0
    assert listed_ids(engine)[-1] == [NEW_ID]  # asked for, and listed no more: gone


def listed_ids(engine) -> list[list[str] | None]:
    """The IDs each /containers/json named in its filters, in order (None: all)."""
    out: list[list[str] | None] = []
    for path, query in engine.queries:
        if path == "/containers/json":
            raw = parse_qs(query).get("filters")
            out.append(json.loads(raw[0])["id"] if raw else None)
    return out


def test_the_interval_lists_everything_while_events_list_a_few(fake, run_exporter):
    """The safety net: a change no event named shows at the next full list, which the
    interval brings even while steady events bring lists of the containers they name."""
    engine, feed = fake
    exp = run_exporter("--docker.host", engine.url, "--collect.interval", "4s",
                       "--collect.disk-usage-interval", "0")  # fmt: skip
    exp.wait_for(lambda s: value(s, "docker_exporter_events_stream_up") == 1.0)
    containers = with_new_container()
    engine.set("/containers/json", containers)
    feed.emit(feed.event("create", NEW_ID, name="fresh"), feed.event("start", NEW_ID))
    exp.wait_for(lambda s: value(s, "docker_container_state", name="fresh", state="running") == 1)
    # silently (no event), web-1 stops; events keep naming only "fresh" meanwhile
    silent = copy.deepcopy(containers)
    web = next(c for c in silent if c["Names"] == ["/web-1"])
    web.update(State="exited", Status="Exited (0) 1 second ago")
    engine.set("/containers/json", silent)
    stop = threading.Event()

    def steady() -> None:
        while not stop.wait(0.3):
            feed.emit(feed.event("kill", NEW_ID), feed.event("start", NEW_ID))

    sender = threading.Thread(target=steady, daemon=True)
    sender.start()
    try:
        s = exp.wait_for(
            lambda s: value(s, "docker_container_state", name="web-1", state="exited") == 1.0,
            timeout=30,
        )
    finally:
        stop.set()
        sender.join()
    lists = listed_ids(engine)
    assert [NEW_ID] in lists  # lists the events asked for
    assert lists.count(None) >= 2  # the first list, and the interval's
    assert value(s, "docker_container_state", name="fresh", state="running") == 1.0


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
