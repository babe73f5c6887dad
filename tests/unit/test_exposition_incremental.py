"""Incremental rendering equals prometheus_client's full rendering, byte for byte.

Random sequences of images and containers added, changed and removed go through the
whole pipeline (records, snapshot, publish); after each step the exposition's bytes in
both formats must equal what the library renders from the same collector.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import metrics as m
from exporter.collector import DockerCollector, Families, Head
from exporter.config import label_name
from exporter.exposition import CHUNK_MASK, ROWS_KEPT, Exposition, Piece, Renderer, chunk_starts
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
    # the default chunks (a few objects: one chunk), about two objects each, one each
    chunk_mask=st.sampled_from([CHUNK_MASK, 1, 0]),
)
def test_incremental_rendering_is_the_full_rendering(
    steps, per_image, per_container, clock, chunk_mask
):
    state = State(disk_usage=True, container_sizes=True)
    collector = DockerCollector(state, per_image, per_container, tuple(label_name(k) for k in KEYS))
    exposition = Exposition([collector])
    exposition._renderers[0].chunk_mask = chunk_mask
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


def _id(i: int) -> str:
    """An ID whose short (12-digit) form is distinct too."""
    return f"{i:012x}{'a' * 52}"


def _host(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` containers of ``n // 10`` images, each in a compose project of ten."""
    images = [
        {"Id": f"sha256:{_id(i)}", "RepoTags": [f"app{i}:1"], "Created": 1700000000, "Size": 10}
        for i in range(n // 10)
    ]
    containers = [
        {
            "Id": _id(i),
            "Names": [f"/c{i}"],
            "Image": f"app{i % (n // 10)}:1",
            "ImageID": f"sha256:{_id(i % (n // 10))}",
            "Created": 1700000000,
            "State": "running",
            "Status": "Up 1 hour",
            "Labels": {KEYS[0]: f"p{i // 10}"},
        }
        for i in range(n)
    ]
    return images, containers


def test_a_change_builds_only_the_chunks_that_hold_it_again():
    state = State(disk_usage=False)
    collector = DockerCollector(state)
    exposition = Exposition([collector])
    images, containers = _host(2000)

    def publish(now: float) -> None:
        snap = build_inventory(
            ENGINE, parse_images(images), parse_containers(containers), now, KEYS[:1]
        )
        state.inventory.publish(lambda _: OK, snap)
        exposition.refresh()

    publish(1.0e9)
    assert exposition.formatted == 200 + 2000 + 200  # images, containers, projects
    publish(1.0e9)  # a full list of the same host: equal objects, nothing built
    assert (exposition.formatted, exposition._renderers[0].chunks_built) == (0, 0)
    # and the chunks hold the new objects, not the equal old ones (which are freed)
    held = [o for c in exposition._renderers[0]._kinds["containers"].chunks for o in c.objects]
    snap = state.inventory.result.snapshot
    assert snap is not None and len(held) == 2000
    assert all(a is b for a, b in zip(held, snap.containers))
    # one container exits: its lines and its project's counts (its image has other running
    # containers: the same facts)
    containers[1234] = dict(containers[1234], State="exited", Status="Exited (3) 1 second ago")
    publish(1.0e9)
    assert (exposition.formatted, exposition._renderers[0].chunks_built) == (2, 2)
    assert exposition.current.text == generate_latest(collector)
    assert gzip.decompress(exposition.current.body(True, True)) == generate_openmetrics(collector)
    # one container more and one less: chunks are cut again, the others' lines reused
    containers.insert(0, dict(containers[0], Id=_id(9999), Names=["/new"]))
    del containers[1501]  # c1500
    publish(1.0e9)
    # the new container, the removed one's and its own images (their container counts) and
    # projects
    assert exposition.formatted == 1 + 2 + 2
    assert exposition.current.text == generate_latest(collector)


def test_chunk_boundaries_follow_keys_not_positions():
    # integers hash to themselves, whatever PYTHONHASHSEED: exact boundaries
    keys = list(range(1, 1001))
    assert chunk_starts(keys) == [0, *(k - 1 for k in keys if k % 128 == 0)]
    assert chunk_starts(keys, mask=0) == list(range(1000))  # one object a chunk
    # an insertion or a removal moves no other boundary: the same keys start chunks
    after = [*keys[:300], 5000, *keys[300:700], *keys[701:]]
    started = {after[i] for i in chunk_starts(after)}
    assert started == {1, *(k for k in after if k % 128 == 0)}
    assert 5000 not in started and 640 in started


def test_a_gzip_body_is_one_member_that_zlib_reads_to_its_end():
    """Spliced deflate segments: one gzip member, its CRC and length checked, nothing after."""
    state = State(disk_usage=False)
    exposition = Exposition([DockerCollector(state)])
    images, containers = _host(3000)
    snap = build_inventory(ENGINE, parse_images(images), parse_containers(containers), 1e9)
    state.inventory.publish(lambda _: OK, snap)
    exposition.refresh()
    body = exposition.current.body(True, True)
    reader = zlib.decompressobj(wbits=31)
    assert reader.decompress(body) == exposition.current.openmetrics
    assert reader.eof and reader.unused_data == b""
    assert body[:3] == b"\x1f\x8b\x08"


def test_a_small_family_given_outright_is_reused_a_large_one_not_held():
    head = Head.of(m.CONTAINER_UPDATE_STATUS)
    renderer = Renderer()

    def piece(n: int) -> Piece:
        rows = tuple(((f"c{i}", "current"), 1.0) for i in range(n))
        ((_, pieces),) = renderer.render([Families((head,), (rows,))])
        return pieces[0]

    first = piece(ROWS_KEPT)
    assert piece(ROWS_KEPT) is first  # equal rows: the same piece, its gzip segment too
    big = piece(ROWS_KEPT + 1)
    assert piece(ROWS_KEPT + 1) is not big  # formatted again rather than held twice
    assert piece(ROWS_KEPT + 1).raw == big.raw
