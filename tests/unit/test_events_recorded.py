"""What dockerd 20.10, 26.1, 28.5 (both image stores) and Podman 4.3 and 5.8 really sent on
/events (tests/record_events.py), through the engine's filter and the counter: the restart
loop ends equal to inspect's RestartCount, the OOM kill is one (on Podman, which sends no oom
event, as the inspect after its die says), and the healthcheck execs are left out by the
filter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.events import FILTERS, OOM_EXIT_CODE, EventCounter, parse_event, short_id
from tests.support.paths import FIXTURES

ENGINES = (
    "docker-20.10",
    "docker-26.1",
    "docker-28.5",
    "docker-28.5-containerd",
    "podman-4.3",
    "podman-5.8",
)


def recorded(engine: str) -> tuple[list[bytes], dict[str, Any]]:
    lines = (FIXTURES / engine / "events.jsonl").read_bytes().splitlines()
    meta = json.loads((FIXTURES / engine / "events.json").read_text())
    return lines, meta


def engine_filter(line: bytes) -> bool:
    """What the engine sends with the exporter's filters (moby matches the bare action)."""
    event = json.loads(line)
    action = event["Action"].split(":", 1)[0]
    return event["Type"] in FILTERS["type"] and action in FILTERS["event"]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_recorded_line_parses(engine):
    lines, _ = recorded(engine)
    assert lines
    for line in lines:
        assert parse_event(line).time_nano > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_recorded_scenes_count_as_the_engine_reports(engine):
    lines, meta = recorded(engine)
    counter = EventCounter()
    inspects = 0
    for line in filter(engine_filter, lines):
        event = parse_event(line)
        assert counter.add(event)
        if engine.startswith("podman") and event.action == "die":
            assert event.exit_code is not None  # Podman's die carries exitCode
            if event.exit_code == OOM_EXIT_CODE:  # what the stream inspects (eventstream.py)
                inspects += 1
                hog = event.actor_id == meta["hog"]["id"]
                counter.inspected(event.actor_id, hog and meta["hog"]["oom_killed"])
    loop = counter.containers[short_id(meta["loop"]["id"])]
    assert loop.restarts == meta["loop"]["restart_count"] == 2
    assert loop.last_exit_code == 2
    hog = counter.containers[short_id(meta["hog"]["id"])]
    assert hog.last_exit_code == meta["hog"]["exit_code"] == 137
    # Podman sends no oom event; 4.3's inspect says OOMKilled false (its conmon writes the
    # marker into its working directory on cgroup v1), 5.8's true
    assert hog.oom_kills == (1 if meta["hog"]["oom_killed"] else 0)
    assert meta["hog"]["oom_killed"] is (engine != "podman-4.3")
    oom_events = [line for line in lines if json.loads(line)["Action"] == "oom"]
    assert len(oom_events) == (0 if engine.startswith("podman") else 1)
    # the hog's die, and the healthchecked container's restart and rm -f (its sleep ignores
    # SIGTERM: SIGKILLed, 137): three inspects, one OOM
    assert inspects == (3 if engine.startswith("podman") else 0)
    # the healthchecked container: removed at the end, so forgotten
    assert len(counter.containers) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_the_filter_leaves_out_healthcheck_execs(engine):
    lines, _ = recorded(engine)
    actions = [json.loads(line)["Action"].split(":", 1)[0] for line in lines]
    sent = [json.loads(line)["Action"] for line in lines if engine_filter(line)]
    if engine.startswith("docker"):
        assert actions.count("exec_start") >= 3  # the engine emitted them...
    assert not [a for a in sent if a.startswith(("exec_", "health_status"))]  # ...not sent


@pytest.mark.parametrize("engine", [e for e in ENGINES if e.startswith("docker")])
def test_docker_sends_oom_before_die_137_and_28_5_image_create(engine):
    """Every dockerd: ``oom`` right before the ``die`` with exitCode 137. 28.5's builds emit
    an image ``create`` (each committed step) beside the ``tag``; 26.1 and older do not."""
    lines, meta = recorded(engine)
    events = [json.loads(line) for line in lines]
    hog = [e["Action"] for e in events if e.get("id") == meta["hog"]["id"]]
    assert hog[hog.index("oom") + 1] == "die"
    (die,) = [e for e in events if e.get("id") == meta["hog"]["id"] and e["Action"] == "die"]
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    creates = [e for e in events if e["Type"] == "image" and e["Action"] == "create"]
    assert len(creates) == {"docker-28.5": 2, "docker-28.5-containerd": 3}.get(engine, 0)
