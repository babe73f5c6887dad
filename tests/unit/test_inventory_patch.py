"""An inventory patched with the containers events named equals a full list of the same state.

After a container event, the inventory job lists only the containers the event named
(``/containers/json?filters={"id":[...]}``) and patches the previous snapshot
(``patch_inventory``). Starting from answers recorded on real engines, random changes
(state, health, exit code, labels, name; removals; new containers on any image) must give
exactly the snapshot a full list of the new state gives: every container's facts, the
counts by state and project, and each image's container count, unused flag and last use.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.records import parse_containers, parse_images, parse_version
from exporter.snapshot import build_inventory, patch_inventory, short_id
from tests.support.paths import load

ENGINES = ("docker-20.10", "docker-26.1", "podman-4.3")
LABELS = ("com.docker.compose.project", "com.docker.compose.service")
NOW = 1765000000.0
STATES = ("created", "running", "paused", "restarting", "exited", "dead", "removing")


def answers(engine: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        load(f"{engine}/version.json"),
        load(f"{engine}/images.json"),
        load(f"{engine}/containers.json"),
    )


def full(engine: str, containers: list[dict[str, Any]], now: float = NOW):
    version, images, _ = answers(engine)
    return build_inventory(
        parse_version(version), parse_images(images), parse_containers(containers), now, LABELS
    )


def patched(engine: str, before, after, asked, listed_before: float = NOW):
    """The snapshot of ``before`` (listed at ``listed_before``), patched at NOW with what a
    filtered list of ``asked`` (full IDs) gives in state ``after``."""
    previous = full(engine, before, now=listed_before)
    listed = parse_containers([c for c in after if c["Id"] in asked])
    return patch_inventory(
        previous, listed, frozenset(short_id(i) for i in asked), NOW, LABELS
    ), previous


@st.composite
def changes(draw: st.DrawFn, engine: str) -> tuple[list[dict[str, Any]], set[str]]:
    """A new container list (the engine's order: the newest first) and the IDs events named."""
    _, images, before = answers(engine)
    after: list[dict[str, Any]] = []
    asked: set[str] = set()
    for c in before:
        change = draw(st.sampled_from(("keep", "keep", "change", "remove", "ask")))
        if change == "remove":
            asked.add(c["Id"])
            continue
        c = copy.deepcopy(c)
        if change == "change":
            asked.add(c["Id"])
            c["State"] = draw(st.sampled_from(STATES))
            c["Status"] = draw(st.sampled_from(("Up 2 seconds (healthy)", "Exited (137) now", "")))
            labels = c.setdefault("Labels", {}) or {}
            labels["com.docker.compose.project"] = draw(st.sampled_from(("shop", "blog", "")))
            c["Labels"] = labels
            if draw(st.booleans()):
                c["Names"] = [f"/renamed-{c['Id'][:6]}"]
        elif change == "ask":  # an event that changed nothing the list shows
            asked.add(c["Id"])
        after.append(c)
    for n in range(draw(st.integers(0, 3))):
        image = draw(st.sampled_from(images))
        template = copy.deepcopy(draw(st.sampled_from(before)))
        new_id = f"{n:x}" * 64
        template.update(
            Id=new_id[:64],
            Names=[f"/new-{n}"],
            Image=(image.get("RepoTags") or [image["Id"]])[0],
            ImageID=image["Id"],
            State=draw(st.sampled_from(STATES)),
            Created=int(NOW) - n,
        )
        after.insert(0, template)
        asked.add(new_id[:64])
    return after, asked


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_patch_equals_a_full_list(engine, data):
    after, asked = data.draw(changes(engine))
    _, _, before = answers(engine)
    # listed at the same time: images no changed container uses keep their last use
    snapshot, _ = patched(engine, before, after, asked)
    assert snapshot == full(engine, after)


@pytest.mark.parametrize("engine", ENGINES)
def test_untouched_images_keep_the_last_use_their_list_saw(engine):
    """Only the changed containers were seen now: an image in use by none of them keeps
    the time of the full list that saw it in use."""
    _, _, before = answers(engine)
    running = next(c for c in before if c["State"] == "running")
    after = copy.deepcopy(before)
    stopped = next(c for c in after if c["Id"] == running["Id"])
    stopped["State"] = "exited"
    snapshot, previous = patched(engine, before, after, {running["Id"]}, listed_before=NOW - 10)
    touched = short_id(running["ImageID"])
    for old, new in zip(previous.images, snapshot.images):
        if old.image_id != touched:
            assert new is old
    expected = {i.image_id: i for i in full(engine, after).images}[touched]
    assert {i.image_id: i for i in snapshot.images}[touched] == expected
    assert snapshot.containers_by_state["running"] == previous.containers_by_state["running"] - 1
    assert snapshot.containers_by_state["exited"] == previous.containers_by_state["exited"] + 1


def test_an_engine_that_ignores_the_filter_changes_only_what_was_asked():
    engine = "docker-26.1"
    _, _, before = answers(engine)
    after = copy.deepcopy(before)
    for c in after:
        c["State"] = "dead"  # what the engine lists now, but only one container was asked
    asked = {after[0]["Id"]}
    previous = full(engine, before, now=NOW - 10)
    snapshot = patch_inventory(
        previous, parse_containers(after), frozenset(short_id(i) for i in asked), NOW, LABELS
    )
    dead = [c.container_id for c in snapshot.containers if c.state == "dead"]
    assert dead == [short_id(after[0]["Id"])]
