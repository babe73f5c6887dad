"""Facts derived from records: inventory and disk usage, on synthetic API 1.52 answers."""

from __future__ import annotations

from exporter.records import parse_containers, parse_disk_usage, parse_images, parse_version
from exporter.snapshot import (
    build_disk_usage,
    build_inventory,
    image_name,
    normalize_ref,
    short_id,
    split_tag,
)
from tests.support.inventory import NOW
from tests.support.paths import load


def test_totals_count_ids_dangling_and_unused_from_the_container_list(synthetic_inventory):
    snap = synthetic_inventory
    assert snap.images_total == 4
    assert snap.images_dangling == 2
    # Containers says 2 for the app image; the list has 3 users, and 0 for cccc/dddd.
    assert snap.images_unused == 2
    assert {i.image_id: i.containers for i in snap.images} == {
        "aaaa1111bbbb": 3,
        "bbbb2222cccc": 1,
        "cccc3333dddd": 0,
        "dddd4444eeee": 0,
    }


def test_all_seven_states_present_with_zeros(synthetic_inventory):
    assert dict(synthetic_inventory.containers_by_state) == {
        "created": 1,
        "restarting": 1,
        "running": 1,
        "removing": 0,
        "paused": 0,
        "exited": 1,
        "dead": 0,
    }


def test_image_names_tags_and_last_used(synthetic_inventory):
    images = {i.image_id: i for i in synthetic_inventory.images}
    app = images["aaaa1111bbbb"]
    assert app.name == "registry.example/app:2"
    assert app.tags == (("registry.example/app", "2"), ("registry.example/app", "latest"))
    assert app.last_used == NOW  # a running container uses it
    assert images["bbbb2222cccc"].name == "<none>:<none>"
    assert images["bbbb2222cccc"].last_used == NOW  # restarting counts as in use
    assert images["cccc3333dddd"].last_used is None  # never used: no series
    assert images["dddd4444eeee"].dangling is False


def test_container_facts_health_exit_outdated_labels(synthetic_inventory):
    c = {x.name: x for x in synthetic_inventory.containers}
    assert (c["web-1"].health, c["web-1"].image_outdated, c["web-1"].labels) == (
        "healthy",
        False,
        ("shop", "web"),
    )
    assert (c["worker"].exit_code, c["worker"].health, c["worker"].image_outdated) == (
        137,
        None,
        False,
    )
    # Image rewritten to the ID of an untagged image: the tag moved away.
    assert (c["old-job"].health, c["old-job"].image_outdated, c["old-job"].labels) == (
        "unhealthy",
        True,
        ("", ""),
    )
    # The tag it was created from no longer exists.
    assert c["gone-tag"].image_outdated is True
    assert c["gone-tag"].exit_code is None
    assert c["web-1"].container_id == "111111111111"
    assert c["web-1"].image_id == "aaaa1111bbbb"


def test_last_used_without_running_container_is_newest_creation():
    images = parse_images(load("synthetic/images-1.52.json"))
    containers = [
        c for c in parse_containers(load("synthetic/containers-1.52.json")) if c.name != "web-1"
    ]
    snap = build_inventory(
        parse_version(load("synthetic/version-1.52.json")), images, containers, NOW
    )
    app = next(i for i in snap.images if i.image_id == "aaaa1111bbbb")
    assert app.last_used == 1764300000.0  # gone-tag, the newest of worker and gone-tag


def test_reference_helpers():
    assert short_id("sha256:0123456789abcdef") == "0123456789ab"
    assert image_name(["b:1", "a:2"]) == "a:2"
    assert image_name([]) == "<none>:<none>"
    assert split_tag("localhost:5000/app") == ("localhost:5000/app", "latest")
    assert split_tag("localhost:5000/app:v1") == ("localhost:5000/app", "v1")
    assert normalize_ref("docker.io/library/busybox") == "busybox:latest"
    assert normalize_ref("docker.io/grafana/grafana:10") == "grafana/grafana:10"


def test_outdated_matches_docker_io_long_form():
    images = parse_images(
        [{"Id": "sha256:" + "1" * 64, "RepoTags": ["busybox:latest"], "Size": 1, "Created": 1}]
    )
    containers = parse_containers(
        [
            {
                "Id": "c" * 64,
                "Names": ["/x"],
                "Image": "docker.io/library/busybox",
                "ImageID": "sha256:" + "1" * 64,
                "State": "running",
                "Status": "Up",
            }
        ]
    )
    snap = build_inventory(parse_version({}), images, containers, NOW)
    assert snap.containers[0].image_outdated is False


def test_disk_usage_matches_the_cli_formulas():
    snap = build_disk_usage(parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW)
    r = snap.resources
    # images: SIZE=LayersSize; used = (50M-30M) + (40M-30M); RECLAIMABLE = 60M - 30M
    assert (r["images"].size, r["images"].reclaimable, r["images"].total, r["images"].active) == (
        60_000_000,
        30_000_000,
        5,
        2,
    )
    # containers: running and paused are active; only the exited one's SizeRw is reclaimable
    assert (r["containers"].size, r["containers"].reclaimable) == (7000, 2000)
    assert (r["containers"].total, r["containers"].active) == (3, 2)
    # volumes: -1 and missing UsageData are skipped, never summed
    assert (r["volumes"].size, r["volumes"].reclaimable) == (800_000, 300_000)
    assert (r["volumes"].total, r["volumes"].active) == (4, 1)
    # build cache: shared records are not counted in SIZE
    assert (r["build_cache"].size, r["build_cache"].reclaimable) == (30000, 20000)
    assert (r["build_cache"].total, r["build_cache"].active) == (4, 2)


def test_disk_usage_per_image_and_prune_figures():
    snap = build_disk_usage(parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW)
    assert {(i.image_id, i.name, i.unique, i.shared) for i in snap.images} == {
        ("aaaa1111bbbb", "registry.example/app:latest", 20_000_000, 30_000_000),
        ("bbbb2222cccc", "<none>:<none>", 10_000_000, 30_000_000),
        ("cccc3333dddd", "<none>:<none>", 7_000_000, 0),
        ("dddd4444eeee", "busybox:latest", 3_000_000, 1_000_000),
        # 9999 has SharedSize -1: no per-image series rather than an invented number
    }
    # dangling: only cccc (bbbb is dangling but a container uses it: prune keeps it)
    assert snap.dangling_unique == 7_000_000
    assert snap.unused_unique == 10_000_000


def test_disk_usage_only_requested_resources():
    snap = build_disk_usage(
        parse_disk_usage(load("synthetic/system_df-1.52.json")), NOW, ("images",)
    )
    assert set(snap.resources) == {"images"}


def test_disk_usage_sections_absent_from_the_answer_are_not_invented():
    df = parse_disk_usage({"LayersSize": 10, "Images": [], "Containers": None})
    snap = build_disk_usage(df, NOW)
    assert set(snap.resources) == {"images", "containers"}
    assert snap.resources["images"].reclaimable == 10
