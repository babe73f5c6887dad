"""The collector on a real registry: exact values with get_sample_value, no stale series."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.collector import current_container_sizes, current_image_disk
from exporter.filesystem import FilesystemUsage
from exporter.records import (
    parse_containers,
    parse_disk_usage,
    parse_images,
    parse_info,
    parse_version,
)
from exporter.snapshot import (
    ContainerFacts,
    ContainerSize,
    ContainerSizesSnapshot,
    DiskUsageSnapshot,
    ImageDiskFacts,
    ImageFacts,
    InventorySnapshot,
    build_disk_usage,
    build_inventory,
)
from exporter.state import JobStatus, State
from tests.support.inventory import (
    NOW,
    SYNTHETIC,
    exporter_registry,
    publish,
    synthetic_inventory,
)
from tests.support.paths import load


def setup(per_image=True, per_container=True):
    state = State(disk_usage=True)
    return state, exporter_registry(state, per_image=per_image, per_container=per_container)


def publish_inventory(state, images=SYNTHETIC["images"]):
    publish(state.inventory, synthetic_inventory(images=images))


def test_before_any_collection_only_exporter_series():
    _, reg = setup()
    assert reg.get_sample_value("docker_up") == 0.0
    assert (
        reg.get_sample_value("docker_exporter_collection_success", {"collector": "inventory"})
        == 0.0
    )
    assert (
        reg.get_sample_value("docker_exporter_collection_errors_total", {"collector": "disk_usage"})
        == 0
    )
    assert reg.get_sample_value("docker_images") is None
    assert (
        reg.get_sample_value(
            "docker_exporter_last_success_timestamp_seconds", {"collector": "inventory"}
        )
        is None
    )


def test_inventory_values():
    state, reg = setup()
    publish_inventory(state)
    g = reg.get_sample_value
    assert g("docker_up") == 1.0
    assert g("docker_exporter_collection_duration_seconds", {"collector": "inventory"}) == 0.25
    assert g("docker_exporter_last_success_timestamp_seconds", {"collector": "inventory"}) == NOW
    assert (
        g(
            "docker_engine_info",
            {
                "version": "29.0.0",
                "api_version": "1.52",
                "os": "linux",
                "arch": "amd64",
                "kernel_version": "6.8.0",
                "product": "Docker Engine",
            },
        )
        == 1.0
    )
    assert (g("docker_images"), g("docker_images_dangling"), g("docker_images_unused")) == (4, 2, 2)
    assert g("docker_containers", {"state": "removing"}) == 0.0
    assert g("docker_containers", {"state": "running"}) == 1.0
    app = {"image_id": "aaaa1111bbbb", "name": "registry.example/app:2"}
    assert g("docker_image_size_bytes", app) == 52428800
    assert g("docker_image_created_timestamp_seconds", app) == 1764000000
    assert g("docker_image_containers", app) == 3
    assert g("docker_image_last_used_timestamp_seconds", app) == NOW
    assert (
        g(
            "docker_image_tag_info",
            {"image_id": "aaaa1111bbbb", "repository": "registry.example/app", "tag": "latest"},
        )
        == 1
    )
    unused = {"image_id": "cccc3333dddd", "name": "<none>:<none>"}
    assert g("docker_image_containers", unused) == 0
    assert g("docker_image_last_used_timestamp_seconds", unused) is None
    assert (
        g(
            "docker_container_info",
            {
                "name": "web-1",
                "container_id": "111111111111",
                "image": "registry.example/app:latest",
                "image_id": "aaaa1111bbbb",
            },
        )
        == 1
    )
    assert g("docker_container_state", {"name": "old-job", "state": "restarting"}) == 1
    assert g("docker_container_created_timestamp_seconds", {"name": "worker"}) == 1764200000
    assert g("docker_container_health_status", {"name": "old-job", "status": "unhealthy"}) == 1
    assert g("docker_container_health_status", {"name": "worker", "status": "healthy"}) is None
    assert g("docker_container_exit_code", {"name": "worker"}) == 137
    assert g("docker_container_exit_code", {"name": "web-1"}) is None
    assert g("docker_container_image_outdated", {"name": "gone-tag"}) == 1
    assert g("docker_container_image_outdated", {"name": "web-1"}) == 0
    assert (
        g(
            "docker_container_labels",
            {
                "name": "web-1",
                "label_com_docker_compose_project": "shop",
                "label_com_docker_compose_service": "web",
            },
        )
        == 1
    )


def test_removed_objects_vanish_and_failure_drops_per_object_series():
    state, reg = setup()
    publish_inventory(state)
    assert (
        reg.get_sample_value("docker_container_state", {"name": "web-1", "state": "running"}) == 1
    )
    snap = build_inventory(parse_version({}), parse_images([]), parse_containers([]), NOW + 15)
    state.inventory.publish(lambda _: JobStatus(success=True, last_success=NOW + 15), snap)
    assert (
        reg.get_sample_value("docker_container_state", {"name": "web-1", "state": "running"})
        is None
    )
    assert reg.get_sample_value("docker_images") == 0
    failed = JobStatus(success=False, last_success=NOW + 15, failures=1, last_error="down")
    state.inventory.publish(lambda _: failed, None)
    text = "\n".join(str(s) for f in reg.collect() for s in f.samples)
    assert reg.get_sample_value("docker_up") == 0
    assert (
        reg.get_sample_value("docker_exporter_collection_errors_total", {"collector": "inventory"})
        == 1
    )
    assert reg.get_sample_value("docker_images") is None
    assert "docker_container" not in text and "docker_engine_info" not in text
    # the time of the last good data is still there, so staleness is visible
    assert (
        reg.get_sample_value(
            "docker_exporter_last_success_timestamp_seconds", {"collector": "inventory"}
        )
        == NOW + 15
    )


def test_cardinality_switches_keep_aggregates():
    state, reg = setup(per_image=False, per_container=False)
    publish_inventory(state)
    names = {f.name for f in reg.collect()}
    assert {"docker_images", "docker_containers", "docker_images_unused"} <= names
    assert not any(n.startswith(("docker_image_", "docker_container_")) for n in names)


def test_api_1_44_images_do_not_leak_minus_one():
    """API 1.44 sends Containers and SharedSize as -1: counts come from the container list."""
    state, reg = setup()
    publish_inventory(state, "synthetic/images-1.44.json")
    nginx = {"image_id": "eeee5555ffff", "name": "nginx:1.25"}
    untagged = {"image_id": "ffff6666aaaa", "name": "<none>:<none>"}
    images = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in reg.collect()
        for s in fam.samples
        if s.name.startswith("docker_image")
    }
    assert images == {
        ("docker_images", ()): 2.0,
        ("docker_images_dangling", ()): 1.0,
        ("docker_images_unused", ()): 2.0,
        **{
            (name, tuple(sorted(labels.items()))): value
            for labels, size, created in ((nginx, 187e6, 1.7e9), (untagged, 120e6, 1.69e9))
            for name, value in (
                ("docker_image_size_bytes", size),
                ("docker_image_created_timestamp_seconds", created),
                ("docker_image_containers", 0.0),
            )
        },
        (
            "docker_image_tag_info",
            (("image_id", "eeee5555ffff"), ("repository", "nginx"), ("tag", "1.25")),
        ): 1.0,
    }


def test_disk_usage_values():
    state, reg = setup()
    snap = build_disk_usage(parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW)
    state.disk_usage.publish(lambda _: JobStatus(success=True, last_success=NOW), snap)
    g = reg.get_sample_value
    # no current inventory: no per-image df series (they could name removed images)
    assert (
        g("docker_image_unique_size_bytes", {"image_id": "dddd4444eeee", "name": "busybox:latest"})
        is None
    )
    assert g("docker_disk_usage_bytes", {"resource": "images"}) == 60_000_000
    publish_inventory(state)
    assert g("docker_disk_usage_bytes", {"resource": "images"}) == 60_000_000
    assert g("docker_disk_reclaimable_bytes", {"resource": "images"}) == 30_000_000
    assert g("docker_disk_usage_objects", {"resource": "volumes"}) == 4
    assert g("docker_disk_usage_active_objects", {"resource": "build_cache"}) == 2
    assert g("docker_images_dangling_unique_bytes") == 7_000_000
    assert g("docker_images_unused_unique_bytes") == 10_000_000
    assert (
        g("docker_image_unique_size_bytes", {"image_id": "dddd4444eeee", "name": "busybox:latest"})
        == 3_000_000
    )
    assert (
        g("docker_image_shared_size_bytes", {"image_id": "dddd4444eeee", "name": "busybox:latest"})
        == 1_000_000
    )
    # named as the inventory names it (the df answer says registry.example/app:latest)
    assert (
        g(
            "docker_image_unique_size_bytes",
            {"image_id": "aaaa1111bbbb", "name": "registry.example/app:2"},
        )
        == 20_000_000
    )
    # 9999 is in the df answer but not in the inventory: gone, so no series
    assert not [s for f in reg.collect() for s in f.samples if "999999999999" in str(s.labels)]


def test_disk_data_does_not_fake_up():
    state, reg = setup()
    snap = build_disk_usage(parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW)
    state.disk_usage.publish(lambda _: JobStatus(success=True, last_success=NOW), snap)
    assert reg.get_sample_value("docker_up") == 0


def _inventory(images: list[tuple[str, str]], containers: list[str]) -> InventorySnapshot:
    engine = parse_version({})
    return InventorySnapshot(
        collected_at=NOW,
        engine=engine,
        images=tuple(
            ImageFacts(image_id, name, 1, None, 0, (), False, None) for image_id, name in images
        ),
        containers=tuple(
            ContainerFacts(name, "c" * 12, "i", "i" * 12, "running", None, None, None, False, ())
            for name in containers
        ),
        images_total=len(images),
        images_dangling=0,
        images_unused=0,
        containers_by_state={},
    )


def _df(*images: tuple[str, str]) -> DiskUsageSnapshot:
    facts = tuple(ImageDiskFacts(image_id, name, 10, 5) for image_id, name in images)
    return DiskUsageSnapshot(NOW, {}, facts, 0, 0)


@pytest.mark.parametrize(
    ("inventory", "df", "expected"),
    [
        # no inventory (failed or not yet run): nothing is known to be current
        (None, _df(("a" * 12, "app:1")), ()),
        # kept, and renamed to the inventory's name (Podman's df says a bare "1")
        (
            _inventory([("a" * 12, "app:1")], []),
            _df(("a" * 12, "1")),
            (ImageDiskFacts("a" * 12, "app:1", 10, 5),),
        ),
        # an image removed since the df ran is dropped, its order otherwise kept
        (
            _inventory([("a" * 12, "app:1"), ("b" * 12, "db:2")], []),
            _df(("b" * 12, "db:2"), ("c" * 12, "gone:1"), ("a" * 12, "app:1")),
            (ImageDiskFacts("b" * 12, "db:2", 10, 5), ImageDiskFacts("a" * 12, "app:1", 10, 5)),
        ),
        # an image the df has not seen yet has no df facts
        (_inventory([("a" * 12, "app:1")], []), _df(), ()),
    ],
)
def test_df_images_matched_against_the_newest_inventory(inventory, df, expected):
    assert current_image_disk(df, inventory) == expected


@pytest.mark.parametrize(
    ("containers", "sizes", "expected"),
    [
        (None, ("web",), ()),
        (["web", "db"], ("db", "old", "web"), ("db", "web")),
        (["web"], (), ()),
    ],
)
def test_container_sizes_matched_against_the_newest_inventory(containers, sizes, expected):
    inventory = None if containers is None else _inventory([], containers)
    snap = ContainerSizesSnapshot(NOW, tuple(ContainerSize(n, 1, 2) for n in sizes))
    assert tuple(c.name for c in current_container_sizes(snap, inventory)) == expected


def test_storage_info_filesystem_and_thresholds():
    state = State(disk_usage=True)
    thresholds = (("image_disk_share", 0.9), ("dangling_images", 5.0))
    g = exporter_registry(state, alert_thresholds=thresholds).get_sample_value
    assert g("docker_exporter_alert_threshold", {"threshold": "image_disk_share"}) == 0.9
    assert g("docker_exporter_alert_threshold", {"threshold": "dangling_images"}) == 5.0
    assert g("docker_exporter_alert_threshold", {"threshold": "reclaimable_share"}) is None
    root, driver = parse_info(load("docker-20.10/info.json"))
    engine = replace(
        parse_version(load("docker-20.10/version.json")), data_root=root, storage_driver=driver
    )
    publish(state.inventory, build_inventory(engine, (), (), NOW, ()))
    labels = {"data_root": "/tmp/inv-60a54ncp/data", "storage_driver": "overlay2"}
    assert g("docker_engine_storage_info", labels) == 1.0
    df = build_disk_usage(parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW)
    publish(state.disk_usage, df)
    assert g("docker_data_root_filesystem_size_bytes") is None  # not measured: no series
    publish(state.disk_usage, replace(df, data_root_fs=FilesystemUsage(40 * 10**9, 12 * 10**9)))
    assert g("docker_data_root_filesystem_size_bytes") == 40e9
    assert g("docker_data_root_filesystem_avail_bytes") == 12e9


def test_no_storage_info_without_a_data_root():
    state, reg = setup()
    publish_inventory(state)  # parse_version alone: /info not read
    assert [m for m in reg.collect() if m.name == "docker_engine_storage_info"] == []
