"""Pull, recreate or leave alone: the pure derivation, and the registry job against a
stand-in engine and a stand-in registry (request counts per cycle, the fleet's shared cache)."""

from __future__ import annotations

import pytest

from exporter.collector import DockerCollector
from exporter.config import EngineConfig, JobSchedule
from exporter.engine import EngineClient
from exporter.jobs import RegistryJob
from exporter.records import ContainerRecord, ImageRecord, parse_containers, parse_images
from exporter.reference import parse_reference
from exporter.registry import RegistryChecker, TagCheck
from exporter.registry_credentials import CredentialStore
from exporter.state import State
from exporter.updates import (
    LocalImages,
    build_updates,
    container_status,
    digests_to_check,
    key_of,
    needs_inspect,
    refs_to_check,
)
from tests.support.fake_engine import FakeEngine
from tests.support.fake_registry import DIGEST_A, DIGEST_B, Reply, fake_registry, manifest
from tests.support.paths import load

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
OLD, NEW, BUILT = ("sha256:" + c * 64 for c in "abc")


def image(image_id: str, tags: tuple[str, ...], digests: tuple[str, ...]) -> ImageRecord:
    return ImageRecord(image_id, tags, digests, None, None, None, None)


def container(cid: str, name: str, image_ref: str, image_id: str) -> ContainerRecord:
    return ContainerRecord(cid, name, image_ref, image_id, None, "running", "Up", None, None, {})


IMAGES = (
    # the engine sorts RepoDigests: the registry's may be the second one
    image(NEW, ("nginx:latest",), (f"nginx@{D3}", f"nginx@{D2}")),
    image(OLD, (), (f"nginx@{D1}",)),  # the old nginx:latest, still used
    image(BUILT, ("app:dev",), ()),  # built here
)
CONTAINERS = (
    container("c1" * 32, "web", "nginx", NEW),
    container("c2" * 32, "stale", OLD.removeprefix("sha256:")[:12], OLD),  # tag moved
    container("c3" * 32, "dev", "app:dev", BUILT),
    container("c4" * 32, "pinned", f"nginx@{D1}", OLD),
)
CREATED_FROM = {
    "c1" * 32: "nginx",
    "c2" * 32: "nginx:latest",  # from inspect's Config.Image
    "c3" * 32: "app:dev",
    "c4" * 32: f"nginx@{D1}",
}
NGINX = ("docker.io", "library/nginx", "latest")


def statuses(registry_digest: str) -> dict[str, str]:
    local = LocalImages(IMAGES)
    checks = {NGINX: TagCheck(registry_digest, "", 1.0)}
    return {c.name: container_status(c, CREATED_FROM[c.id], local, checks) for c in CONTAINERS}


def test_statuses_against_all_repo_digests():
    assert statuses(D2) == {
        "web": "current",
        "stale": "recreate",
        "dev": "local",
        "pinned": "local",
    }
    assert statuses(D3) == {
        "web": "current",
        "stale": "recreate",
        "dev": "local",
        "pinned": "local",
    }
    # the registry moved on: both must pull (recreating alone would not help)
    assert statuses(D1) == {"web": "pull", "stale": "pull", "dev": "local", "pinned": "local"}


# Docker's containerd image store: every tagged image names its own manifest digest
C_PULLED, C_BUILT = ("sha256:" + c * 64 for c in "de")
C_IMAGES = (
    ImageRecord(C_PULLED, ("reg:5000/team/app:1",), (f"reg:5000/team/app@{D1}",), None,
                None, None, None, own_digests=True),
    ImageRecord(C_BUILT, ("reg:5000/team/dev:1",), (f"reg:5000/team/dev@{D2}",), None,
                None, None, None, own_digests=True),
)  # fmt: skip
C_CONTAINERS = (
    container("d1" * 32, "app", "reg:5000/team/app:1", C_PULLED),
    container("d2" * 32, "dev", "reg:5000/team/dev:1", C_BUILT),
)
C_FROM = {c.id: c.image for c in C_CONTAINERS}
APP_TAG, DEV_TAG = ("reg:5000", "team/app", "1"), ("reg:5000", "team/dev", "1")


def test_the_containerd_store_asks_the_registry_for_its_own_digests():
    """A tag answered with another digest (or 404) on the containerd store: the registry
    is asked for the local digest; found: pull; 404: built here, local; no answer: unknown."""
    local = LocalImages(C_IMAGES)
    checks = {
        APP_TAG: TagCheck(D3, "", 1.0),
        DEV_TAG: TagCheck("", "no such tag", 1.0, False, True),
    }
    refs = digests_to_check(C_CONTAINERS, C_FROM, local, checks)
    assert [str(r) for r in refs] == [f"reg:5000/team/app@{D1}", f"reg:5000/team/dev@{D2}"]
    found = TagCheck(D1, "", 1.0)
    missing = TagCheck("", "no such tag or repository (HTTP 404)", 1.0, False, True)
    failed = TagCheck("", "registry answered HTTP 500", 1.0)
    app_digest, dev_digest = ("reg:5000", "team/app", D1), ("reg:5000", "team/dev", D2)

    def got(known: dict[tuple[str, str, str], TagCheck]) -> dict[str, str]:
        return {
            c.name: container_status(c, C_FROM[c.id], local, checks, known) for c in C_CONTAINERS
        }

    assert got({app_digest: found, dev_digest: missing}) == {"app": "pull", "dev": "local"}
    assert got({app_digest: missing, dev_digest: found}) == {"app": "local", "dev": "unknown"}
    assert got({app_digest: failed}) == {"app": "unknown", "dev": "unknown"}
    assert got({}) == {"app": "unknown", "dev": "unknown"}
    # the tag answered with the local digest: no digest check, current
    same = {APP_TAG: TagCheck(D1, "", 1.0)}
    assert digests_to_check(C_CONTAINERS[:1], C_FROM, local, same) == ()
    assert container_status(C_CONTAINERS[0], C_FROM["d1" * 32], local, same) == "current"
    # the update-available series: only for an image the registry had
    snap = build_updates(5.0, C_CONTAINERS, C_FROM, C_IMAGES, checks, {},
                         {app_digest: found, dev_digest: missing})  # fmt: skip
    assert [(i.tag, i.available) for i in snap.images] == [("reg:5000/team/app:1", True)]
    snap = build_updates(5.0, C_CONTAINERS, C_FROM, C_IMAGES, checks, {},
                         {app_digest: missing, dev_digest: missing})  # fmt: skip
    assert snap.images == ()


def test_recorded_containerd_store_images_name_their_own_digests():
    images = parse_images(load("docker-28.5-containerd/images.json"))
    tagged = [i for i in images if i.repo_tags]
    assert len(tagged) == 7 and all(i.own_digests and i.repo_digests for i in tagged)
    classic = parse_images(load("docker-28.5/images.json"))
    assert not any(i.own_digests or i.repo_digests for i in classic)


def test_unknown_while_unchecked_or_failed():
    local = LocalImages(IMAGES)
    failed = {NGINX: TagCheck("", "registry answered HTTP 500", 1.0)}
    for checks in ({}, failed):
        web = container_status(CONTAINERS[0], "nginx", local, checks)
        assert web == "unknown"
    assert container_status(CONTAINERS[2], "app:dev", local, failed) == "local"


def test_only_tags_with_a_registry_digest_are_asked():
    local = LocalImages(IMAGES)
    refs = refs_to_check(CONTAINERS, CREATED_FROM, local)
    assert [str(r) for r in refs] == ["docker.io/library/nginx:latest"]
    assert [needs_inspect(c) for c in CONTAINERS] == [False, True, False, False]


def test_all_tags_adds_tags_no_container_uses():
    images = (
        *IMAGES,
        image(D1, ("127.0.0.1:5000/tools/jq:1",), (f"127.0.0.1:5000/tools/jq@{D2}",)),
    )
    refs = refs_to_check(CONTAINERS, CREATED_FROM, LocalImages(images), all_tags=True)
    assert [str(r) for r in refs] == [
        "127.0.0.1:5000/tools/jq:1",
        "docker.io/library/nginx:latest",
    ]


def test_image_update_available_is_absent_while_unknown():
    snap = build_updates(5.0, CONTAINERS, CREATED_FROM, IMAGES, {NGINX: TagCheck(D1, "", 1.0)}, {})
    assert [(i.image_id, i.tag, i.available) for i in snap.images] == [
        ("bbbbbbbbbbbb", "nginx:latest", True)
    ]
    assert [(r.registry, r.success) for r in snap.registries] == [("docker.io", True)]
    unknown = build_updates(5.0, CONTAINERS, CREATED_FROM, IMAGES, {}, {})
    assert unknown.images == () and unknown.registries == ()


# --- the job ----------------------------------------------------------------------------------


def engine_answers(registry_host: str) -> dict[str, object]:
    tag = f"{registry_host}/team/app:v1"
    images = [
        {"Id": NEW, "RepoTags": [tag], "RepoDigests": [f"{registry_host}/team/app@{DIGEST_A}"]},
        {"Id": OLD, "RepoTags": [], "RepoDigests": [f"{registry_host}/team/app@{DIGEST_B}"]},
    ]
    containers = [
        {"Id": "c1" * 32, "Names": ["/new"], "Image": tag, "ImageID": NEW, "State": "running"},
        {
            "Id": "c2" * 32,
            "Names": ["/old"],
            "Image": OLD[7:19],
            "ImageID": OLD,
            "State": "running",
        },
    ]
    return {
        "/version": load("synthetic/version-1.52.json"),
        "/info": load("docker-20.10/info.json"),
        "/images/json": images,
        "/containers/json": containers,
        f"/containers/{'c2' * 32}/json": {"Id": "c2" * 32, "Config": {"Image": tag}},
    }


def registry_job(engine: FakeEngine, state: State, checker: RegistryChecker) -> RegistryJob:
    client = EngineClient(EngineConfig(engine.url), 2.0)
    return RegistryJob(client, JobSchedule(60.0, 2.0), state.registry, checker)


def test_the_job_inspects_once_and_asks_the_registry_once_per_interval_for_a_fleet():
    clock = [1000.0]
    with fake_registry(lambda m, p, h: manifest(DIGEST_A)) as reg:
        checker = RegistryChecker(CredentialStore(None), clock=lambda: clock[0])
        engines = [FakeEngine(engine_answers(reg.host)) for _ in range(2)]
        try:
            states = [State(registry=True) for _ in engines]
            jobs = [registry_job(e, s, checker) for e, s in zip(engines, states)]
            for _ in range(3):
                for job in jobs:
                    snap = job.collect(clock[0])
                    assert {c.name: c.status for c in snap.containers} == {
                        "new": "current",
                        "old": "recreate",
                    }
                clock[0] += 30.0  # two cycles per registry interval of 60 s
            for e in engines:
                inspect = f"/containers/{'c2' * 32}/json"
                assert (e.count("/containers/json"), e.count("/images/json"), e.count(inspect)) == (
                    3,
                    3,
                    1,
                )
                assert e.count("/info") == 3 + 1  # one per run, and one with /version on connect
            # 2 targets x 3 cycles over 90 s of 60 s intervals: 2 registry requests in all
            assert [s.method for s in reg.requests()] == ["HEAD", "HEAD"]
            state = states[0]
            state.registry.publish(lambda s: s, snap)
            rendered = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in DockerCollector(state).collect()
                for s in f.samples
            }
        finally:
            for e in engines:
                e.close()
    assert (
        rendered[("docker_container_update_status", (("name", "old"), ("status", "recreate")))]
        == 1.0
    )
    assert (
        rendered[("docker_container_update_status", (("name", "old"), ("status", "current")))]
        == 0.0
    )
    assert (
        rendered[
            (
                "docker_image_update_available",
                (("image_id", "bbbbbbbbbbbb"), ("tag", f"{reg.host}/team/app:v1")),
            )
        ]
        == 0.0
    )
    assert rendered[("docker_registry_check_success", (("registry", reg.host),))] == 1.0
    assert (
        rendered[
            (
                "docker_registry_requests_total",
                (("code", "200"), ("method", "HEAD"), ("registry", reg.host)),
            )
        ]
        == 2.0
    )


# --- recorded from real engines (tests/record_registry_fixtures.py) ---------------------------


@pytest.mark.parametrize("version", ["20.10", "26.1", "28.5", "28.5-containerd"])
def test_recorded_single_and_multi_arch_pulls_read_current(version: str):
    """After a pull by tag the engine keeps the digest the registry answers to our HEAD:
    for a multi-arch image the index's, listed beside the platform manifest's (the
    containerd store keeps the index as an image of its own, with the index's digest only)."""
    containerd_store = version.endswith("-containerd")
    fixtures = f"registry-docker-{version}"
    images = parse_images(load(f"{fixtures}/images.json"))
    containers = parse_containers(load(f"{fixtures}/containers.json"))
    registry = load(f"{fixtures}/registry.json")
    host, digests = registry["host"], registry["digests"]
    checks = {key_of(parse_reference(tag)): TagCheck(d, "", 1.0) for tag, d in digests.items()}
    created_from = {c.id: c.image for c in containers}
    multi = next(i for i in images if f"{host}/multi/app:latest" in i.repo_tags)
    # the index and the amd64 manifest (pushed alone too); the containerd store: the index
    assert len(multi.repo_digests) == (1 if containerd_store else 2)
    assert all(i.own_digests is containerd_store for i in images)
    snap = build_updates(1.0, containers, created_from, images, checks, {})
    assert {c.name: c.status for c in snap.containers} == {"multi": "current", "single": "current"}
    assert {(i.tag, i.available) for i in snap.images} >= {
        (f"{host}/multi/app:latest", False),
        (f"{host}/single/app:v1", False),
    }
    moved = {k: TagCheck("sha256:" + "0" * 64, "", 1.0) for k in checks}
    snap = build_updates(1.0, containers, created_from, images, moved, {})
    want = "unknown" if containerd_store else "pull"  # there: pulled, or built here?
    assert {c.name: c.status for c in snap.containers} == {"multi": want, "single": want}
    # the registry has the local digests (they were pulled from it): pull on every store
    refs = digests_to_check(containers, created_from, LocalImages(images), moved)
    assert len(refs) == (2 if containerd_store else 0)
    known = {key_of(r): TagCheck(r.digest, "", 1.0) for r in refs}
    snap = build_updates(1.0, containers, created_from, images, moved, {}, known)
    assert {c.name: c.status for c in snap.containers} == {"multi": "pull", "single": "pull"}


def test_a_registry_without_answer_is_asked_once_per_run_not_once_per_tag():
    slow = Reply(200, {"Docker-Content-Digest": DIGEST_A}, drip=0.2)  # far beyond 1 s
    with fake_registry(lambda m, p, h: slow) as reg:
        answers = engine_answers(reg.host)
        tags = [f"{reg.host}/team/app:v{i}" for i in (1, 2, 3)]
        answers["/images/json"] = [
            {
                "Id": f"sha256:{i}" + "0" * 63,
                "RepoTags": [t],
                "RepoDigests": [f"{t[:-3]}@{DIGEST_A}"],
            }
            for i, t in enumerate(tags)
        ]
        answers["/containers/json"] = [
            {
                "Id": f"{i}" * 64,
                "Names": [f"/c{i}"],
                "Image": t,
                "ImageID": f"sha256:{i}" + "0" * 63,
            }
            for i, t in enumerate(tags)
        ]
        engine = FakeEngine(answers)
        try:
            checker = RegistryChecker(CredentialStore(None), timeout=1.0)
            snap = registry_job(engine, State(registry=True), checker).collect(1.0)
        finally:
            engine.close()
        assert len(reg.requests()) == 1
    assert {c.name: c.status for c in snap.containers} == {
        "c0": "unknown",
        "c1": "unknown",
        "c2": "unknown",
    }
    assert [(r.registry, r.success) for r in snap.registries] == [(reg.host, False)]
