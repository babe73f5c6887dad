"""Exact figures from answers recorded on real engines: Debian's dockerd 20.10 and Podman 4.3.

The fixtures were recorded by tests/record_fixtures.py from the scenario in
tests/harness/scenario.py; docker-20.10/system_df.txt is what `docker system df` printed
for the same state, so the disk figures are checked against the CLI itself.
"""

from __future__ import annotations

import re

import pytest

from exporter.records import parse_disk_usage
from exporter.snapshot import build_disk_usage
from tests.support.humanize import human_size
from tests.support.inventory import recorded_inventory
from tests.support.paths import FIXTURES, load

NOW = 2.0e9
KEYS = ("com.docker.compose.project", "weird")


def inventory(engine: str):
    return recorded_inventory(engine, now=NOW, labels=KEYS)


def test_docker_inventory():
    snap = inventory("docker-20.10")
    assert (snap.engine.version, snap.engine.api_version, snap.engine.product) == (
        "20.10.24+dfsg1",
        "1.41",
        "Docker Engine",
    )
    assert (snap.images_total, snap.images_dangling, snap.images_unused) == (9, 2, 6)
    assert dict(snap.containers_by_state) == {
        "created": 1,
        "restarting": 0,
        "running": 4,
        "removing": 0,
        "paused": 1,
        "exited": 2,
        "dead": 0,
    }
    c = {x.name: x for x in snap.containers}
    assert (c["inv-healthy"].health, c["inv-unhealthy"].health) == ("healthy", "unhealthy")
    assert (c["inv-exited3"].exit_code, c["inv-exited0"].exit_code) == (3, 0)
    assert c["inv-paused"].health is None and c["inv-paused"].exit_code is None
    assert c["inv-outdated"].image_outdated is True
    assert c["inv-outdated"].image.startswith("sha256:94c8df9bec61")
    assert not any(x.image_outdated for name, x in c.items() if name != "inv-outdated")
    assert c["inv-running"].labels == ("demo", 'say "hi" \\ back\nslash é')
    images = {i.image_id: i for i in snap.images}
    assert images["e2117a4df2e2"].name == "inv-alias:v1"
    assert images["e2117a4df2e2"].tags == (
        ("inv-alias", "v1"),
        ("inv-app", "1"),
        ("inv-app", "latest"),
    )
    assert images["e2117a4df2e2"].containers == 6
    assert images["e2117a4df2e2"].last_used == NOW
    assert images["836412f8c59f"].dangling and images["836412f8c59f"].containers == 0
    assert images["5852a3a60b06"].last_used is None


def test_podman_inventory():
    snap = inventory("podman-4.3")
    assert (snap.engine.product, snap.engine.version, snap.engine.api_version) == (
        "Podman Engine",
        "4.3.1",
        "1.41",
    )
    assert (snap.images_total, snap.images_dangling, snap.images_unused) == (5, 1, 4)
    c = {x.name: x for x in snap.containers}
    assert c["inv-exited3"].exit_code == 3
    # Podman's list carries tags as localhost/name:tag, on both sides of the comparison
    assert not any(x.image_outdated for x in c.values())
    # Podman's list has neither Health nor "(healthy)" in Status: no health is invented
    assert all(x.health is None for x in c.values())


def cli_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (FIXTURES / "docker-20.10/system_df.txt").read_text().splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        rows[parts[0]] = parts[1:]
    return rows


@pytest.mark.parametrize(
    ("resource", "row"),
    [
        ("images", "Images"),
        ("containers", "Containers"),
        ("volumes", "Local Volumes"),
        ("build_cache", "Build Cache"),
    ],
)
def test_docker_disk_usage_equals_the_cli(resource, row):
    snap = build_disk_usage(parse_disk_usage(load("docker-20.10/system_df.json")), NOW)
    usage = snap.resources[resource]
    total, active, size, reclaimable = cli_rows()[row]
    assert (usage.total, usage.active) == (int(total), int(active))
    assert human_size(usage.size) == size
    assert human_size(usage.reclaimable) == reclaimable.split(" (")[0]
    if "(" in reclaimable and usage.size:
        assert f"({usage.reclaimable * 100 // usage.size}%)" == reclaimable.split(" ")[1]


def test_docker_disk_usage_exact_bytes():
    snap = build_disk_usage(parse_disk_usage(load("docker-20.10/system_df.json")), NOW)
    r = snap.resources
    assert (r["images"].size, r["images"].reclaimable) == (4899571, 4725491)
    assert (r["build_cache"].size, r["build_cache"].reclaimable) == (2002894, 2002894)
    assert snap.dangling_unique == 153600  # 836412f8c59f; 94c8df9bec61 is dangling but used
    assert snap.unused_unique == 2740019


def test_docker_per_image_unique_sizes_equal_the_cli_verbose_table():
    snap = build_disk_usage(parse_disk_usage(load("docker-20.10/system_df.json")), NOW)
    ours = {i.image_id: (human_size(i.shared), human_size(i.unique)) for i in snap.images}
    text = (FIXTURES / "docker-20.10/system_df_v.txt").read_text()
    table = text.split("Images space usage:")[1].split("Containers space usage:")[0]
    lines = [ln for ln in table.strip().splitlines()[1:] if ln.strip()]
    assert len(lines) == len(ours) == 9
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip())
        image_id, shared, unique = parts[2], parts[5], parts[6]
        assert ours[image_id] == (shared, unique), line


def test_podman_disk_usage_is_not_invented():
    snap = build_disk_usage(parse_disk_usage(load("podman-4.3/system_df.json")), NOW)
    # LayersSize 0 beside 2 MB images: Podman did not compute it, so no images row at all
    assert "images" not in snap.resources
    assert snap.resources["containers"].total == 7
    # one record per image although Podman repeats an image per tag
    assert len({i.image_id for i in snap.images}) == len(snap.images) == 7
    assert snap.dangling_unique == 155765
