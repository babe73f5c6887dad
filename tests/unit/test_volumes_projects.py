"""Volumes, build cache and compose projects: records, derived facts and their series.

The df figures are checked on answers recorded from real dockerd 20.10, 26.1 and 28.5 (both
image stores), whose
scenario wrote known bytes into a used and a dangling volume (tests/harness/scenario.py);
the BuildKit prune rules on hand-made records, one rule per test.
"""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from exporter.records import (
    BuildCacheRecord,
    parse_containers,
    parse_disk_usage,
    timestamp,
)
from exporter.snapshot import (
    build_cache_idle_bytes,
    build_container_sizes,
    build_disk_usage,
    summarize_build_cache,
)
from exporter.state import State
from tests.support.inventory import (
    NOW,
    exporter_registry,
    inventory_from,
    publish,
    synthetic_state,
)
from tests.support.paths import FIXTURES, load

DOCKER = ("docker-20.10", "docker-26.1", "docker-28.5", "docker-28.5-containerd")
# what tests/harness/scenario.py wrote before recording: its VOL_USED and VOL_UNUSED volumes
VOL_USED, VOL_USED_BYTES = "inv-vol-used", 50 * 1024
VOL_UNUSED, VOL_UNUSED_BYTES = "inv-vol-unused", 20 * 1024
DAY = 86400.0


def utc(*parts: int) -> float:
    return float(calendar.timegm((*parts, 0, 0, 0)))


# --- records -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T18:05:16Z", utc(2026, 11, 27, 18, 5, 16)),
        ("2026-11-28T02:31:17.5Z", utc(2026, 11, 28, 2, 31, 17) + 0.5),
        ("2026-11-27T19:05:16+01:00", utc(2026, 11, 27, 18, 5, 16)),
        ("2026-11-27T16:05:16-0200", utc(2026, 11, 27, 18, 5, 16)),
        ("0001-01-01T00:00:00Z", None),  # Go's zero time: never
        ("2026-13-01T00:00:00Z", None),
        ("yesterday", None),
        (None, None),
        (1795802716, None),
    ],
)
def test_engine_times_become_unix_seconds_or_none(text: object, expected: float | None) -> None:
    assert timestamp(text) == expected


def test_build_cache_parents_in_every_spelling() -> None:
    records = parse_disk_usage(
        {
            "BuildCache": [
                {"ID": "a", "Parent": "p"},  # before API 1.42
                {"ID": "b", "Parents": ["p", "q"]},
                {"ID": "c", " Parents": ["q"]},  # Docker 23 to 26: a space in the JSON key
                {"ID": "d", "Parent": "", "Parents": None},
            ]
        }
    ).build_cache
    assert records is not None
    assert [r.parents for r in records] == [("p",), ("p", "q"), ("q",), ()]


@pytest.mark.parametrize("engine", DOCKER)
def test_recorded_volumes_are_the_bytes_the_scenario_wrote(engine: str) -> None:
    snap = build_disk_usage(parse_disk_usage(load(f"{engine}/system_df.json")), NOW)
    by_name = {v.name: v for v in snap.volumes}
    assert set(by_name) == {VOL_USED, VOL_UNUSED}
    used, unused = by_name[VOL_USED], by_name[VOL_UNUSED]
    assert (used.size, used.containers, used.driver) == (VOL_USED_BYTES, 1, "local")
    assert (unused.size, unused.containers, unused.driver) == (VOL_UNUSED_BYTES, 0, "local")
    created = {
        "docker-20.10": (utc(2026, 11, 27, 18, 5, 15), utc(2026, 11, 27, 18, 5, 16)),
        "docker-26.1": (utc(2026, 11, 28, 2, 31, 15), utc(2026, 11, 28, 2, 31, 16)),
        "docker-28.5": (utc(2026, 12, 2, 12, 32, 12), utc(2026, 12, 2, 12, 32, 14)),
        "docker-28.5-containerd": (utc(2026, 12, 2, 12, 32, 23), utc(2026, 12, 2, 12, 32, 25)),
    }[engine]
    assert (used.created, unused.created) == created
    assert snap.volumes_summary is not None
    assert snap.volumes_summary.dangling == 1
    assert snap.volumes_summary.dangling_bytes == VOL_UNUSED_BYTES == 20480
    assert snap.volumes_summary.project_bytes == {}


def test_unmeasured_volumes_have_no_size_and_are_not_dangling() -> None:
    """The synthetic answer's nfs volume says -1 for both; another has no UsageData."""
    registry = exporter_registry(synthetic_state())
    sizes = {
        (s.labels["volume"], s.labels["driver"]): s.value
        for f in registry.collect()
        if f.name == "docker_volume_size_bytes"
        for s in f.samples
    }
    assert sizes == {("data", "local"): 500000, ("orphan", "local"): 300000}
    assert registry.get_sample_value("docker_volume_containers", {"volume": "remote"}) is None
    assert registry.get_sample_value("docker_volume_containers", {"volume": "nodata"}) is None
    assert registry.get_sample_value("docker_volumes_dangling") == 1  # only "orphan" counts 0
    assert registry.get_sample_value("docker_volumes_dangling_bytes") == 300000


def test_volume_project_bytes_come_from_volume_labels() -> None:
    df = parse_disk_usage(
        {
            "Volumes": [
                {"Name": "a", "Labels": {"com.docker.compose.project": "shop"},
                 "UsageData": {"Size": 100, "RefCount": 1}},
                {"Name": "b", "Labels": {"com.docker.compose.project": "shop"},
                 "UsageData": {"Size": 20, "RefCount": 0}},
                {"Name": "c", "Labels": {"com.docker.stack.namespace": "blog"},
                 "UsageData": {"Size": 3, "RefCount": 0}},
                {"Name": "d", "Labels": {"com.docker.stack.namespace": "blog"},
                 "UsageData": {"Size": -1, "RefCount": -1}},
                {"Name": "e", "Labels": {"other": "x"}, "UsageData": {"Size": 7, "RefCount": 0}},
                {"Name": "a", "UsageData": {"Size": 999, "RefCount": 0}},  # listed twice
            ]
        }
    )  # fmt: skip
    snap = build_disk_usage(df, NOW, ("volumes",))
    assert snap.volumes_summary is not None
    assert snap.volumes_summary.project_bytes == {"shop": 120, "blog": 3}
    assert (snap.volumes_summary.dangling, snap.volumes_summary.dangling_bytes) == (3, 30)
    assert [v.name for v in snap.volumes] == ["a", "b", "c", "d", "e"]


def test_no_volume_series_when_the_answer_has_no_volumes() -> None:
    state = State()
    publish(state.disk_usage, build_disk_usage(parse_disk_usage({"Images": []}), NOW))
    registry = exporter_registry(state)
    assert registry.get_sample_value("docker_volumes_dangling") is None
    assert registry.get_sample_value("docker_build_cache_idle_bytes", {"idle_for": "24h"}) is None


def test_per_volume_off_keeps_the_totals() -> None:
    state = synthetic_state()
    on, off = exporter_registry(state), exporter_registry(state, per_volume=False)
    labels = {"volume": "data", "driver": "local"}
    assert on.get_sample_value("docker_volume_size_bytes", labels) == 500000
    assert off.get_sample_value("docker_volume_size_bytes", labels) is None
    assert off.get_sample_value("docker_volume_containers", {"volume": "data"}) is None
    assert off.get_sample_value("docker_volumes_dangling_bytes") == 300000


# --- build cache -------------------------------------------------------------------------


def record(id: str, size: int | None = 100, **kw: Any) -> BuildCacheRecord:
    kw.setdefault("in_use", False)
    kw.setdefault("shared", False)
    kw.setdefault("type", "regular")
    kw.setdefault("last_used", NOW - 2 * DAY)
    return BuildCacheRecord(id=id, size=size, **kw)


def test_idle_means_last_used_at_or_before_the_cutoff() -> None:
    records = [
        record("old", 1, last_used=NOW - 2 * DAY),
        record("edge", 10, last_used=NOW - DAY),  # BuildKit keeps only what is After(cutoff)
        record("new", 100, last_used=NOW - DAY + 1),
    ]
    assert build_cache_idle_bytes(records, NOW, DAY) == 11


def test_never_used_records_are_idle_whatever_their_creation() -> None:
    """LastUsedAt null: BuildKit prunes it at any until, without looking at CreatedAt."""
    records = [record("fresh", 5, last_used=None, created=NOW)]
    assert build_cache_idle_bytes(records, NOW, 7 * DAY) == 5


def test_in_use_shared_internal_and_frontend_records_stay() -> None:
    records = [
        record("in-use", 1, in_use=True),
        record("shared", 10, shared=True),
        record("internal", 100, type="internal"),
        record("frontend", 1000, type="frontend"),
        record("cachemount", 10000, type="exec.cachemount"),
        record("source", None, type="source.local"),  # size unknown: counts 0 bytes
    ]
    assert build_cache_idle_bytes(records, NOW, DAY) == 10000


def test_a_parent_goes_only_with_all_its_children() -> None:
    records = [
        record("root", 1),
        record("idle-child", 10, parents=("root",)),
        record("busy-child", 100, parents=("root",), last_used=NOW),
        record("lone", 1000),
        record("leaf", 10000, parents=("lone",)),
        record("leaf-of-leaf", 100000, parents=("leaf",)),
    ]
    # root waits for busy-child; lone goes once leaf and leaf-of-leaf went
    assert build_cache_idle_bytes(records, NOW, DAY) == 10 + 1000 + 10000 + 100000


def test_a_parent_missing_from_the_answer_is_ignored() -> None:
    records = [record("child", 7, parents=("gone",))]
    assert build_cache_idle_bytes(records, NOW, DAY) == 7


def test_build_cache_bytes_put_each_record_in_one_state() -> None:
    records = [
        record("a", 1, in_use=True),
        record("b", 10, shared=True, in_use=True),
        record("c", 100, shared=True),
        record("d", 1000),
    ]
    summary = summarize_build_cache(records, NOW)
    assert summary.bytes_by_state == {"in_use": 1, "unused": 1000, "shared": 110}
    assert summary.idle_bytes == {"24h": 1000, "168h": 0}


@pytest.mark.parametrize("engine", DOCKER)
def test_recorded_build_cache_matches_docker_system_df(engine: str) -> None:
    """Build cache usage in the recorded 'docker system df -v' (in_use + unused): 2.003MB;
    2.019MB on the containerd store, whose shared record is the 3.07MB image snapshot."""
    df = parse_disk_usage(load(f"{engine}/system_df.json"))
    assert df.build_cache is not None
    total, shared, shown = (
        (2019328, 3143953, "2.019MB")
        if engine.endswith("-containerd")
        else (2002894, 2002739, "2.003MB")
    )
    built = max(r.last_used or 0.0 for r in df.build_cache)
    summary = summarize_build_cache(df.build_cache, built + 7 * DAY + 1)
    assert summary.bytes_by_state == {"in_use": 0, "unused": total, "shared": shared}
    assert summary.idle_bytes == {"24h": total, "168h": total}
    assert f"Build cache usage: {shown}" in (FIXTURES / engine / "system_df_v.txt").read_text()
    # a day after the build, nothing is 168h idle
    assert summarize_build_cache(df.build_cache, built + DAY + 1).idle_bytes == {
        "24h": total,
        "168h": 0,
    }


# --- projects ----------------------------------------------------------------------------


def container(name: str, state: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Id": f"{name:0<64}"[:64].replace("-", "0"),
        "Names": [f"/{name}"],
        "Image": "app:1",
        "ImageID": "sha256:" + "a" * 64,
        "State": state,
        "Status": "",
        "Labels": labels or {},
    }


COMPOSE = "com.docker.compose.project"
STACK = "com.docker.stack.namespace"
CONTAINERS = [
    container("shop-web-1", "running", {COMPOSE: "shop"}),
    container("shop-db-1", "running", {COMPOSE: "shop"}),
    container("shop-migrate-1", "exited", {COMPOSE: "shop"}),
    container("blog_web.1", "running", {STACK: "blog"}),
    container("both", "paused", {COMPOSE: "compose-wins", STACK: "stack"}),
    container("loner", "running"),
]


def project_state() -> State:
    state = State(container_sizes=True)
    # the compose label is not among the allowlisted keys: projects are read all the same
    quiet = container("quiet-1", "running", {STACK: "quiet"})
    publish(state.inventory, inventory_from([], [*CONTAINERS, quiet], labels=("weird",)))
    sizes = [dict(c, SizeRw=n) for c, n in zip(CONTAINERS, (1, 10, 100, 1000, 10000, 100000))]
    sizes.append(quiet)  # a SizeRw of 0: Docker leaves it out
    publish(state.container_sizes, build_container_sizes(parse_containers(sizes), NOW))
    return state


@pytest.mark.parametrize("per_container", [True, False])
def test_project_containers_by_state_with_zeros(per_container: bool) -> None:
    registry = exporter_registry(project_state(), per_container=per_container)

    def count(project: str, state: str) -> float | None:
        return registry.get_sample_value(
            "docker_project_containers", {"project": project, "state": state}
        )

    assert (count("shop", "running"), count("shop", "exited"), count("shop", "dead")) == (2, 1, 0)
    assert (count("blog", "running"), count("compose-wins", "paused")) == (1, 1)
    assert count("stack", "paused") is None
    projects = {
        s.labels["project"]
        for f in registry.collect()
        if f.name == "docker_project_containers"
        for s in f.samples
    }
    assert projects == {"shop", "blog", "compose-wins", "quiet"}
    families = [f for f in registry.collect() if f.name == "docker_project_containers"]
    samples = [s for f in families for s in f.samples]
    assert len(samples) == 4 * 7


@pytest.mark.parametrize("per_container", [True, False])
def test_project_rw_bytes_sum_the_containers_writable_layers(per_container: bool) -> None:
    registry = exporter_registry(project_state(), per_container=per_container)
    rw = {
        p: registry.get_sample_value("docker_project_rw_bytes", {"project": p})
        for p in ("shop", "blog", "compose-wins", "quiet")
    }
    assert rw == {"shop": 111, "blog": 1000, "compose-wins": 10000, "quiet": 0}
    has_per_container = registry.get_sample_value(
        "docker_container_rw_size_bytes", {"name": "loner"}
    )
    assert has_per_container == (100000 if per_container else None)


def test_no_project_rw_bytes_without_the_container_sizes_job() -> None:
    state = State()
    publish(state.inventory, inventory_from([], CONTAINERS))
    registry = exporter_registry(state)
    assert registry.get_sample_value("docker_project_rw_bytes", {"project": "shop"}) is None
    labels = {"project": "shop", "state": "running"}
    assert registry.get_sample_value("docker_project_containers", labels) == 2


@pytest.mark.parametrize("engine", ["docker-28.5", "docker-28.5-containerd"])
def test_docker_28_5_still_spells_parents_with_a_space(engine: str) -> None:
    raw = load(f"{engine}/system_df.json")["BuildCache"]
    assert [" Parents" in r for r in raw].count(True) == 2
    df = parse_disk_usage(load(f"{engine}/system_df.json"))
    assert df.build_cache is not None
    assert sum(len(r.parents) for r in df.build_cache) == 2
