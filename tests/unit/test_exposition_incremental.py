"""Incremental rendering equals prometheus_client's full rendering, byte for byte.

Random sequences of images and containers added, changed and removed go through the
whole pipeline (records, snapshot, publish); after each step the exposition's bytes in
both formats must equal what the library renders from the same collector.
"""

from __future__ import annotations

import gzip
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.collector import DockerCollector
from exporter.config import label_name
from exporter.exposition import Exposition
from exporter.records import (
    parse_containers,
    parse_disk_usage,
    parse_images,
    parse_version,
)
from exporter.snapshot import build_container_sizes, build_disk_usage, build_inventory
from exporter.state import JobStatus, State
from tests.support.paths import load

KEYS = ("com.docker.compose.project", "team")
ENGINE = parse_version(load("synthetic/version-1.52.json"))
OK = JobStatus(success=True, duration=0.5, last_success=1.0e9)

# Few distinct values, so that changes often collide with existing objects and tags.
texts = st.sampled_from(["a", "b", 'q"uo\\te', "new\nline", "é", ""])
ids = st.integers(0, 7)


def image_id(n: int) -> str:
    return f"sha256:{n:064x}"


@st.composite
def image(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(ids)
    return {
        "Id": image_id(n),
        "RepoTags": draw(st.lists(st.sampled_from(["app:1", "app:2", "x/y:z", "db"]), max_size=2)),
        "Created": draw(st.sampled_from([0, 1700000000, 1700000001])),
        "Size": draw(st.sampled_from([-1, 0, 10, 2**40])),
        "SharedSize": draw(st.sampled_from([-1, 0, 5])),
        "Containers": draw(st.sampled_from([-1, 0, 2])),
    }


@st.composite
def container(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 9))
    state = draw(st.sampled_from(["running", "exited", "created", "paused"]))
    status = {
        "running": draw(st.sampled_from(["Up 1 hour", "Up 2 hours (healthy)", "Up (unhealthy)"])),
        "exited": f"Exited ({draw(st.sampled_from([0, 1, 137]))}) 1 day ago",
        "created": "Created",
        "paused": "Up 1 hour (Paused)",
    }[state]
    return {
        "Id": f"{n:064x}",
        "Names": [f"/{draw(texts)}{n}"],
        "Image": draw(st.sampled_from(["app:1", "app:2", "db", image_id(draw(ids))[7:19]])),
        "ImageID": image_id(draw(ids)),
        "Created": draw(st.sampled_from([1700000000, 1700000100])),
        "State": state,
        "Status": status,
        "Labels": {KEYS[0]: draw(texts), "team": draw(texts)},
        "SizeRw": draw(st.sampled_from([-1, 0, 1000])),
        "SizeRootFs": draw(st.sampled_from([0, 5000])),
    }


# an operation: ("image" | "container", key, raw object or None to remove)
op = st.one_of(
    st.tuples(st.just("image"), ids, st.one_of(st.none(), image())),
    st.tuples(st.just("container"), st.integers(0, 9), st.one_of(st.none(), container())),
)


def library(collector: DockerCollector) -> tuple[bytes, bytes]:
    return generate_latest(collector), generate_openmetrics(collector)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.lists(op, max_size=6), min_size=1, max_size=8),
    per_image=st.booleans(),
    per_container=st.booleans(),
    clock=st.lists(st.sampled_from([1.0e9, 1.0e9 + 15]), min_size=8, max_size=8),
)
def test_incremental_rendering_is_the_full_rendering(steps, per_image, per_container, clock):
    state = State(disk_usage=True, container_sizes=True)
    collector = DockerCollector(state, per_image, per_container, tuple(label_name(k) for k in KEYS))
    exposition = Exposition([collector])
    images: dict[int, dict[str, Any]] = {}
    containers: dict[int, dict[str, Any]] = {}
    for step, now in zip(steps, clock):
        for kind, key, raw in step:
            objects = images if kind == "image" else containers
            if raw is None:
                objects.pop(key, None)
            else:
                objects[key] = dict(raw, Id=image_id(key)) if kind == "image" else raw
        image_records = parse_images(list(images.values()))
        container_records = parse_containers(list(containers.values()))
        state.inventory.publish(
            lambda _: OK, build_inventory(ENGINE, image_records, container_records, now, KEYS)
        )
        df = parse_disk_usage({"LayersSize": 100, "Images": list(images.values())})
        state.disk_usage.publish(lambda _: OK, build_disk_usage(df, now))
        state.container_sizes.publish(lambda _: OK, build_container_sizes(container_records, now))
        exposition.refresh()
        text, om = library(collector)
        rendered = exposition.current
        assert rendered.text == text
        assert rendered.openmetrics == om
        assert gzip.decompress(rendered.body(True, True)) == om


def test_unchanged_objects_are_not_formatted_again():
    state = State(disk_usage=False)
    collector = DockerCollector(state)
    exposition = Exposition([collector])
    images = parse_images(load("synthetic/images-1.52.json"))
    containers = parse_containers(load("synthetic/containers-1.52.json"))
    for now in (1.0e9, 1.0e9 + 15):
        # no container is running from these images' point of view twice: same facts
        snap = build_inventory(ENGINE, images, containers[1:], 1.0e9)
        state.inventory.publish(lambda _: OK, snap)
        exposition.refresh()
        assert exposition.formatted == (len(images) + len(containers) - 1 if now == 1.0e9 else 0)
    # one container more: its image now counts one more container, and its compose project
    # (the only project) one more running one
    changed = build_inventory(ENGINE, images, containers, 1.0e9)
    assert list(changed.projects) == ["shop"]
    state.inventory.publish(lambda _: OK, changed)
    exposition.refresh()
    assert exposition.formatted == 3
    assert exposition.current.text == generate_latest(collector)


def test_only_the_variants_asked_for_are_built_at_each_refresh():
    exposition = Exposition([DockerCollector(State(disk_usage=False))])
    assert exposition.current.pick(True, True)[1].startswith("application/openmetrics-text")
    exposition.refresh()
    assert set(exposition.current._bodies) == {(True, True)}  # built in refresh, not on a scrape
    exposition.current.pick(True, True)  # Prometheus again
    exposition.current.pick(False, False)  # and curl: built on its first request
    exposition.refresh()
    assert set(exposition.current._bodies) == {(True, True), (False, False)}
    exposition.refresh()  # nobody asked for anything since
    assert set(exposition.current._bodies) == set()
