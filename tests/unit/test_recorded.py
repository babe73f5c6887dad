"""Exact figures from answers recorded on real engines: dockerd 20.10 (Debian 12), dockerd 26.1
(Debian 13), dockerd 28.5 (Debian sid) with the classic and with the containerd image store,
Podman 4.3 and Podman 5.8 (Debian forky; podman-5.8/*.txt is what its CLI printed for the same
state).

The fixtures were recorded by tests/record_fixtures.py from the scenario in
tests/harness/scenario.py; docker-*/system_df.txt is what `docker system df` printed
for the same state, so the disk figures are checked against the CLI itself (28.5's own CLI
for 28.5). The 20.10 and 26.1 recordings predate the scenario's inv-looping and inv-oom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.records import parse_containers, parse_disk_usage
from exporter.snapshot import build_container_sizes, build_disk_usage
from tests.support.humanize import human_size
from tests.support.inventory import recorded_inventory
from tests.support.paths import FIXTURES, load

NOW = 2.0e9
KEYS = ("com.docker.compose.project", "weird")


def inventory(engine: str):
    return recorded_inventory(engine, now=NOW, labels=KEYS)


@dataclass(frozen=True)
class Recorded:
    """What differs between the recorded dockerd versions; the rest must be equal."""

    version: str
    api_version: str
    images_reclaimable: int
    health_image_unique: int  # see test_shared_size_counts_hidden_parent_images_from_26_1
    app_containers: int = 6  # 8 with inv-looping and inv-oom (recorded from 28.5 on)
    images_size: int = 4899571
    build_cache: int = 2002894
    dangling_unique: int = 153600
    unused_unique: int = 2740019


# The containerd image store's Size counts each image's compressed content (blobs, config,
# manifests) beside its unpacked snapshots, and SharedSize only shared snapshots: every
# image's "unique" bytes include the base layer's blob, as `docker system df -v` shows them.
DOCKER = {
    "docker-20.10": Recorded("20.10.24+dfsg1", "1.41", 4725491, 10240),
    "docker-26.1": Recorded("26.1.5+dfsg1", "1.45", 4735731, 0),
    "docker-28.5": Recorded("28.5.2+dfsg4", "1.51", 4735731, 0, 8),
    "docker-28.5-containerd": Recorded(
        "28.5.2+dfsg4", "1.51", 8716299, 1141072, 8, 12424466, 2019328, 1428715, 10216505
    ),
}
CLASSIC = ("docker-20.10", "docker-26.1", "docker-28.5")
docker_engines = pytest.mark.parametrize("engine", sorted(DOCKER))


def scenario(engine: str) -> dict[str, Any]:
    data: dict[str, Any] = load(f"{engine}/scenario.json")
    return data


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


@docker_engines
def test_docker_inventory(engine):
    snap = inventory(engine)
    ids = scenario(engine)
    assert (snap.engine.version, snap.engine.api_version, snap.engine.product) == (
        DOCKER[engine].version,
        DOCKER[engine].api_version,
        "Docker Engine",
    )
    assert (snap.images_total, snap.images_dangling, snap.images_unused) == (9, 2, 6)
    assert dict(snap.containers_by_state) == {
        "created": 1,
        "restarting": 0,
        "running": 4,
        "removing": 0,
        "paused": 1,
        "exited": DOCKER[engine].app_containers - 4,  # inv-looping and inv-oom exited too
        "dead": 0,
    }
    c = {x.name: x for x in snap.containers}
    assert (c["inv-healthy"].health, c["inv-unhealthy"].health) == ("healthy", "unhealthy")
    assert (c["inv-exited3"].exit_code, c["inv-exited0"].exit_code) == (3, 0)
    assert c["inv-paused"].health is None and c["inv-paused"].exit_code is None
    assert c["inv-outdated"].image_outdated is True
    assert c["inv-outdated"].image == ids["outdated_image"]
    assert not any(x.image_outdated for name, x in c.items() if name != "inv-outdated")
    assert c["inv-running"].labels == ("demo", 'say "hi" \\ back\nslash é')
    images = {i.image_id: i for i in snap.images}
    app = images[short(ids["app_image"])]
    assert app.name == "inv-alias:v1"
    assert app.tags == (("inv-alias", "v1"), ("inv-app", "1"), ("inv-app", "latest"))
    assert (app.containers, app.last_used) == (DOCKER[engine].app_containers, NOW)
    dangling = images[short(ids["dangling_image"])]
    assert dangling.dangling and dangling.containers == 0
    assert dangling.name == "<none>:<none>"  # 20.10 sends that placeholder, 26.1+ no tag
    assert images[short(ids["unused_image"])].last_used is None


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


def cli_rows(engine: str) -> dict[str, list[str]]:
    rows = {}
    for line in (FIXTURES / f"{engine}/system_df.txt").read_text().splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        rows[parts[0]] = parts[1:]
    return rows


def disk_usage(engine: str):
    return build_disk_usage(parse_disk_usage(load(f"{engine}/system_df.json")), NOW)


@docker_engines
@pytest.mark.parametrize(
    ("resource", "row"),
    [
        ("images", "Images"),
        ("containers", "Containers"),
        ("volumes", "Local Volumes"),
        ("build_cache", "Build Cache"),
    ],
)
def test_docker_disk_usage_equals_the_cli(engine, resource, row):
    usage = disk_usage(engine).resources[resource]
    total, active, size, reclaimable = cli_rows(engine)[row]
    assert (usage.total, usage.active) == (int(total), int(active))
    assert human_size(usage.size) == size
    assert human_size(usage.reclaimable) == reclaimable.split(" (")[0]
    if "(" in reclaimable and usage.size:
        assert f"({usage.reclaimable * 100 // usage.size}%)" == reclaimable.split(" ")[1]


@docker_engines
def test_docker_disk_usage_exact_bytes(engine):
    snap = disk_usage(engine)
    r = snap.resources
    want = DOCKER[engine]
    assert (r["images"].size, r["images"].reclaimable) == (
        want.images_size,
        want.images_reclaimable,
    )
    assert (r["build_cache"].size, r["build_cache"].reclaimable) == (
        want.build_cache,
        want.build_cache,
    )
    # the unused dangling image; the other dangling one is used by inv-outdated
    assert snap.dangling_unique == want.dangling_unique
    assert snap.unused_unique == want.unused_unique


@docker_engines
def test_docker_per_image_unique_sizes_equal_the_cli_verbose_table(engine):
    ours = {
        i.image_id: (human_size(i.shared), human_size(i.unique)) for i in disk_usage(engine).images
    }
    text = (FIXTURES / f"{engine}/system_df_v.txt").read_text()
    table = text.split("Images space usage:")[1].split("Containers space usage:")[0]
    lines = [ln for ln in table.strip().splitlines()[1:] if ln.strip()]
    assert len(lines) == len(ours) == 9
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip())
        image_id, shared, unique = parts[2], parts[5], parts[6]
        assert ours[image_id] == (shared, unique), line


@pytest.mark.parametrize("engine", CLASSIC)
def test_shared_size_counts_hidden_parent_images_from_26_1(engine):
    """inv-health's last build step only sets HEALTHCHECK, so the classic builder leaves a
    hidden parent image with the very same layers. 20.10 counts only listed images when it
    computes SharedSize: the 10 KiB top layer is the image's own. 26.1 counts the hidden
    parent too: the layer is shared, the unique size 0. Both match `docker system df -v`
    of their engine, and the images' reclaimable bytes differ by exactly that layer."""
    images = {i.image_id: i for i in disk_usage(engine).images}
    health = images[short(scenario(engine)["health_image"])]
    assert health.unique == DOCKER[engine].health_image_unique
    assert health.unique + health.shared == 1985472 + 10240  # base + its 10 KiB blob
    gap = DOCKER["docker-26.1"].images_reclaimable - DOCKER["docker-20.10"].images_reclaimable
    assert gap == 10240


def test_containerd_store_sizes_count_compressed_content():
    """28.5's containerd store: the same images as the classic store, each Size larger by
    its compressed content; SharedSize is the base snapshot (1998848 bytes: the classic
    store's 1985472 in whole filesystem blocks), so an image's unique bytes are its own
    snapshot plus all of its content, the base layer's blob included. The dangling image:
    its 150 KiB file (188416 bytes of snapshot) and 1240299 bytes of content."""
    images = {i.image_id: i for i in disk_usage("docker-28.5-containerd").images}
    ids = scenario("docker-28.5-containerd")
    shared = {i.shared for i in images.values() if i.image_id != short(ids["bk_image"])}
    assert shared == {1998848}
    # inv-bk (BuildKit, FROM scratch) shares no snapshot with the others
    assert images[short(ids["bk_image"])].shared == 0
    dangling = images[short(ids["dangling_image"])]
    assert dangling.unique == 188416 + 1240299 == DOCKER["docker-28.5-containerd"].dangling_unique
    classic = {i.image_id: i for i in disk_usage("docker-28.5").images}
    assert len(classic) == len(images) == 9
    # the nine Sizes: 29915456 bytes against the classic store's 18797875
    assert sum(i.unique + i.shared for i in images.values()) == 29915456
    assert sum(i.unique + i.shared for i in classic.values()) == 18797875


def test_podman_disk_usage_is_not_invented():
    snap = build_disk_usage(parse_disk_usage(load("podman-4.3/system_df.json")), NOW)
    # LayersSize 0 beside 2 MB images: Podman did not compute it, so no images row at all
    assert "images" not in snap.resources
    assert snap.resources["containers"].total == 7
    # one record per image although Podman repeats an image per tag
    assert len({i.image_id for i in snap.images}) == len(snap.images) == 7
    assert snap.dangling_unique == 155765


# --- Podman 5.8 (compat API 1.44), beside its own CLI's text -----------------------------------


def podman_cli_rows(engine: str) -> dict[str, list[str]]:
    rows = {}
    for line in (FIXTURES / f"{engine}/system_df.txt").read_text().splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        rows[parts[0]] = parts[1:]
    return rows


def test_podman_5_8_inventory_equals_podman_images():
    snap = inventory("podman-5.8")
    assert (snap.engine.product, snap.engine.version, snap.engine.api_version) == (
        "Podman Engine",
        "5.8.6",
        "1.44",
    )
    listed = (FIXTURES / "podman-5.8/images.txt").read_text().splitlines()[1:]
    ids = {line.split()[2].removeprefix("sha256:")[:12] for line in listed}
    assert {i.image_id for i in snap.images} == ids and snap.images_total == len(ids) == 5
    dangling = (FIXTURES / "podman-5.8/images_dangling.txt").read_text().split()
    assert [i.image_id for i in snap.images if i.dangling] == [short(d) for d in dangling]
    assert (snap.images_dangling, snap.images_unused) == (1, 4)
    # tags fully qualified on both sides; a dangling image's RepoTags is [] (5.4: null)
    app = {i.image_id: i for i in snap.images}[short(scenario("podman-5.8")["app_image"])]
    assert app.tags == (("localhost/inv-alias", "v1"), ("localhost/inv-app", "1"))
    ps = [line.split(" ", 2) for line in (FIXTURES / "podman-5.8/ps.txt").read_text().splitlines()]
    states = {name: state for name, state, _ in ps}
    assert {c.name: c.state for c in snap.containers} == states
    assert not any(x.image_outdated for x in snap.containers)


def test_podman_5_8_disk_usage_equals_podman_system_df_but_where_documented():
    """Images: Podman's CLI counts one row per tag (8), the exporter each image once (7: the
    app image has two tags); size, active and reclaimable are equal. Containers: Podman's CLI
    counts only running ones as active, the exporter (as docker's CLI) counts paused ones
    too: one more active, and the paused container's SizeRw less reclaimable."""
    snap = disk_usage("podman-5.8")
    rows = podman_cli_rows("podman-5.8")
    images, containers = snap.resources["images"], snap.resources["containers"]
    total, active, size, reclaimable = rows["Images"]
    assert (images.total, images.active) == (int(total) - 1, int(active)) == (7, 1)
    assert (images.size, images.reclaimable) == (2917267, 2810279)
    assert human_size(images.size) == size and human_size(images.reclaimable) == "2.81MB"
    assert reclaimable == "2.81MB (96%)"
    total, active, size, reclaimable = rows["Containers"]
    paused_rw = 10784  # inv-paused's SizeRw in the answer
    assert (containers.total, containers.active) == (int(total), int(active) + 1) == (7, 4)
    assert (containers.size, containers.reclaimable) == (64715, 21574)
    assert human_size(containers.size) == size
    assert human_size(containers.reclaimable + paused_rw) == reclaimable.split(" (")[0]


def test_podman_5_8_per_image_sizes_equal_the_verbose_table():
    ours = {
        i.image_id: (human_size(i.shared), human_size(i.unique))
        for i in disk_usage("podman-5.8").images
    }
    text = (FIXTURES / "podman-5.8/system_df_v.txt").read_text()
    table = text.split("Images space usage:")[1].split("Containers space usage:")[0]
    lines = [ln for ln in table.strip().splitlines()[1:] if ln.strip()]
    assert len(lines) == 8 and len(ours) == 7  # one row per tag there
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip())
        image_id, shared, unique = parts[2], parts[5], parts[6]
        assert ours[image_id] == (shared, unique), line


def test_podman_5_8_dangling_bytes_follow_the_engines_dangling_list():
    """Podman's /system/df lists the legacy build's two intermediate images (``<none>``, no
    container, parents of inv-base) that its image list and ``dangling=true`` leave out:
    the totals count the listed images only, so they add up from the per-image series."""
    from exporter.collector import current_image_disk, image_disk_totals

    du = disk_usage("podman-5.8")
    inv = inventory("podman-5.8")
    hidden = {i.image_id for i in du.images} - {i.image_id for i in inv.images}
    assert hidden == {"439789a1cb6a", "f139460c2d02"}
    assert du.dangling_unique == 158194 + 1658 + 2159  # the df alone counts them
    dangling, unused = image_disk_totals(du, inv)
    (dangling_id,) = (FIXTURES / "podman-5.8/images_dangling.txt").read_text().split()
    listed = current_image_disk(du, inv)
    assert dangling == 158194 == sum(i.unique for i in listed if i.image_id == short(dangling_id))
    assert unused == 681662 == sum(i.unique for i in listed if i.unused)
    # SharedSize -1 in /images/json is never read as bytes; the df's are real
    assert all(i.shared == 2124800 for i in listed)


def test_podman_5_8_container_sizes_equal_podman_ps_size():
    from exporter.records import parse_containers
    from exporter.snapshot import build_container_sizes

    sizes = build_container_sizes(parse_containers(load("podman-5.8/containers_size.json")), NOW)
    ours = {c.name: c for c in sizes.containers}
    lines = (FIXTURES / "podman-5.8/ps.txt").read_text().splitlines()
    assert len(lines) == len(ours) == 7
    for line in lines:  # "inv-running running 10.8kB (virtual 2.24MB)"
        name, _, size = line.split(" ", 2)
        rw, virtual = re.fullmatch(r"(\S+) \(virtual (\S+)\)", size).groups()  # type: ignore[union-attr]
        c = ours[name]
        assert c.root_fs is not None and human_size(c.root_fs, 3) == virtual, line
        if name == "inv-created":
            # Podman leaves SizeRw out when it is 0 (as Docker 28's classic store does, issue
            # 22), with SizeRootFs given: a real 0, as `podman ps --size` prints it
            assert (c.rw, rw) == (0, "0B")
            continue
        assert c.rw is not None and human_size(c.rw, 3) == rw, line


@pytest.mark.parametrize(
    ("engine", "sizes"),
    [
        # the classic store: SizeRw left out when 0 (omitempty), a real 0
        ("docker-28.5", {"inv-running": 30720, "inv-created": 0, "inv-outdated": 0}),
        # the containerd store: the snapshot's own bytes, never 0 (whole filesystem blocks)
        (
            "docker-28.5-containerd",
            {"inv-running": 45056, "inv-created": 4096, "inv-outdated": 8192},
        ),
    ],
)
def test_container_rw_sizes_equal_the_cli_verbose_table(engine, sizes):
    data = load(f"{engine}/containers_size.json")
    snap = build_container_sizes(parse_containers(data), NOW)
    ours = {c.name: c.rw for c in snap.containers}
    assert {name: ours[name] for name in sizes} == sizes
    assert all(c.root_fs is not None for c in snap.containers)
    text = (FIXTURES / f"{engine}/system_df_v.txt").read_text()
    table = text.split("Containers space usage:")[1].split("Local Volumes space usage:")[0]
    lines = [ln for ln in table.strip().splitlines()[1:] if ln.strip()]
    assert len(lines) == len(ours) == 10
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip())
        rw = ours[parts[-1]]
        assert rw is not None and human_size(rw, 3) == parts[4], line
