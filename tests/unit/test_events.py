"""Event records and their counts: the restart rule, replays never counted twice, and the
per-container series joined with the newest inventory (events.py, collector.py)."""

from __future__ import annotations

import json

import pytest

from exporter.events import (
    EventCounter,
    EventDataError,
    EventRecord,
    EventsSnapshot,
    parse_event,
    since_param,
)
from exporter.state import State
from tests.support.inventory import exporter_registry, publish, synthetic_inventory

WEB = "1111111111110000000000000000000000000000000000000000000000000000"  # running
WORKER = "2222222222220000000000000000000000000000000000000000000000000000"  # exited (137)
GONE_TAG = "4444444444440000000000000000000000000000000000000000000000000000"  # created
NEW = "9999999999990000000000000000000000000000000000000000000000000000"  # not listed


def line(action: str, actor: str, nano: int, kind: str = "container", **attributes: str) -> bytes:
    return json.dumps(
        {
            "status": action,
            "id": actor,
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": attributes},
            "scope": "local",
            "time": nano // 10**9,
            "timeNano": nano,
        }
    ).encode()


T0 = 1_765_000_000_000_000_000


def feed(counter: EventCounter, *events: tuple[str, str], never_started=None) -> int:
    """Count ``(action, actor)`` events one microsecond apart; returns how many counted."""
    counted = 0
    for i, (action, actor) in enumerate(events):
        extra = {"exitCode": "2"} if action == "die" else {}
        event = parse_event(line(action, actor, T0 + i * 1000, name="c", **extra))
        counted += counter.add(event, never_started)
    return counted


def test_a_moby_event_line_becomes_a_record():
    raw = line("die", WEB, T0 + 5, name="web-1", exitCode="137", image="nginx")
    assert parse_event(raw) == EventRecord("container", "die", WEB, "web-1", 137, T0 + 5)


def test_the_action_suffix_is_dropped_and_only_die_carries_an_exit_code():
    raw = line("exec_start: /bin/sh -c true", WEB, T0, name="web-1", exitCode="1")
    record = parse_event(raw)
    assert (record.action, record.exit_code) == ("exec_start", None)


def test_an_event_without_timenano_takes_its_seconds():
    raw = json.dumps({"Type": "image", "Action": "pull", "Actor": {"ID": "x:1"}, "time": 7})
    assert parse_event(raw.encode()) == EventRecord("image", "pull", "x:1", "", None, 7 * 10**9)


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"garbage", "an event line is not valid JSON"),
        (b'{"Type": "container", "Act', "an event line is not valid JSON"),
        (b"[1, 2]", "an event line is not a JSON object"),
        (b'{"Type": "container", "timeNano": 5}', "an event has no Action"),
        (b'{"Type": "container", "Action": "start"}', "an event has no time"),
        (b"\xff\xfe{}", "an event line is not valid JSON"),
    ],
)
def test_junk_is_one_stable_cause(raw, cause):
    with pytest.raises(EventDataError) as err:
        parse_event(raw)
    assert str(err.value) == cause


def test_restart_policy_loop_counts_every_start_after_the_first():
    counter = EventCounter()
    # docker run --restart=on-failure:3 of a command exiting 2
    events = [("create", NEW), ("start", NEW)] + [("die", NEW), ("start", NEW)] * 3
    events.append(("die", NEW))
    feed(counter, *events)
    c = counter.snapshot().containers[NEW[:12]]
    assert (c.restarts, c.oom_kills, c.last_exit_code) == (3, 0, 2)


def test_docker_restart_counts_one():
    counter = EventCounter()
    feed(counter, ("kill", WEB), ("die", WEB), ("stop", WEB), ("start", WEB), ("restart", WEB))
    assert counter.snapshot().containers[WEB[:12]].restarts == 1


def test_first_start_of_a_container_listed_as_created_is_no_restart():
    counter = EventCounter()
    feed(counter, ("start", GONE_TAG), ("die", GONE_TAG), ("start", GONE_TAG),
         never_started=lambda cid: cid == GONE_TAG[:12])  # fmt: skip
    assert counter.snapshot().containers[GONE_TAG[:12]].restarts == 1


def test_docker_start_of_an_exited_container_is_a_restart():
    counter = EventCounter()
    feed(counter, ("start", WORKER), never_started=lambda cid: False)
    assert counter.snapshot().containers[WORKER[:12]].restarts == 1


def test_oom_kill_then_die_137():
    counter = EventCounter()
    counter.add(parse_event(line("oom", WEB, T0, name="web-1")))
    counter.add(parse_event(line("die", WEB, T0 + 1, name="web-1", exitCode="137")))
    c = counter.snapshot().containers[WEB[:12]]
    assert (c.restarts, c.oom_kills, c.last_exit_code) == (0, 1, 137)


def test_a_replay_is_never_counted_twice():
    counter = EventCounter()
    events = [("create", NEW), ("start", NEW), ("die", NEW), ("start", NEW)]
    assert feed(counter, *events) == 4
    # a reconnect with since = the last event's time replays from it, inclusive; a
    # second event at that same nanosecond is new
    assert feed(counter, *events) == 0
    same_time = parse_event(line("oom", NEW, T0 + 3000, name="c"))
    assert counter.add(same_time)
    assert not counter.add(same_time)
    snap = counter.snapshot()
    assert snap.containers[NEW[:12]].restarts == 1
    assert snap.by_action[("container", "start")] == 2
    assert counter.dropped_replays == 5
    assert since_param(counter.resume_from()) == "1765000000.000003000"


def test_actions_outside_the_set_count_as_other_and_destroy_forgets():
    counter = EventCounter()
    feed(counter, ("create", NEW), ("health_status", NEW), ("destroy", NEW))
    snap = counter.snapshot()
    assert dict(snap.by_action) == {
        ("container", "create"): 1,
        ("container", "other"): 1,
        ("container", "destroy"): 1,
    }
    assert NEW[:12] not in snap.containers


def test_forget_gone_keeps_what_the_stream_named_after_the_list():
    counter = EventCounter()
    feed(counter, ("start", WEB), ("start", NEW))
    counter.forget_gone(frozenset({WEB[:12]}), T0 + 500)  # listed before NEW's start
    assert set(counter.snapshot().containers) == {WEB[:12], NEW[:12]}
    counter.forget_gone(frozenset({WEB[:12]}), T0 + 5000)
    assert set(counter.snapshot().containers) == {WEB[:12]}


# --- the collector -------------------------------------------------------------------------


def registry_with(events: EventsSnapshot | None, per_container: bool = True):
    state = State(disk_usage=False)
    publish(state.inventory, synthetic_inventory())
    state.events = events
    return exporter_registry(state, per_container=per_container)


def counted() -> EventsSnapshot:
    counter = EventCounter()
    counter.up = True
    counter.reconnects = 2
    feed(counter, ("die", WEB), ("start", WEB), ("oom", WEB), ("die", NEW), ("start", NEW))
    return counter.snapshot()


def test_per_container_series_are_those_of_listed_containers():
    reg = registry_with(counted())
    assert reg.get_sample_value("docker_container_restarts_total", {"name": "web-1"}) == 1
    assert reg.get_sample_value("docker_container_oom_kills_total", {"name": "web-1"}) == 1
    assert reg.get_sample_value("docker_container_last_exit_code", {"name": "web-1"}) == 2
    # listed, never seen by the stream: zeros, and the list's exit code of an exited one
    assert reg.get_sample_value("docker_container_restarts_total", {"name": "worker"}) == 0
    assert reg.get_sample_value("docker_container_last_exit_code", {"name": "worker"}) == 137
    assert reg.get_sample_value("docker_container_last_exit_code", {"name": "gone-tag"}) is None
    names = {
        s.labels["name"]
        for metric in reg.collect()
        if metric.name == "docker_container_restarts"
        for s in metric.samples
    }
    assert names == {"web-1", "worker", "old-job", "gone-tag"}  # NEW is not listed


def test_stream_series():
    reg = registry_with(counted())
    assert reg.get_sample_value("docker_exporter_events_stream_up") == 1
    assert reg.get_sample_value("docker_exporter_events_reconnects_total") == 2
    assert reg.get_sample_value("docker_exporter_events_replay_gaps_total") == 0
    assert reg.get_sample_value("docker_exporter_events_last_timestamp_seconds") == pytest.approx(
        1_765_000_000.000004
    )
    total = {"type": "container", "action": "start"}
    assert reg.get_sample_value("docker_events_total", total) == 2
    zero = {"type": "image", "action": "pull"}
    assert reg.get_sample_value("docker_events_total", zero) == 0


def test_per_container_switch_and_no_stream():
    reg = registry_with(counted(), per_container=False)
    assert reg.get_sample_value("docker_container_restarts_total", {"name": "web-1"}) is None
    assert reg.get_sample_value("docker_exporter_events_stream_up") == 1
    reg = registry_with(None)
    assert reg.get_sample_value("docker_exporter_events_stream_up") is None
    assert reg.get_sample_value("docker_container_restarts_total", {"name": "web-1"}) is None


def test_the_rendered_exposition_is_the_library_output():
    from prometheus_client import generate_latest

    from exporter.exposition import render
    from tests.support.inventory import exporter_collector

    state = State(disk_usage=False)
    publish(state.inventory, synthetic_inventory())
    state.events = counted()
    collector = exporter_collector(state)
    registry = exporter_registry(state)
    assert render([collector]).text == generate_latest(registry)
