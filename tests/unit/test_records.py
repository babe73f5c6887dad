"""Parsing engine answers into records: version differences, nulls, sentinels, junk."""

from __future__ import annotations

import json

import pytest

from exporter.records import (
    EngineDataError,
    parse_container,
    parse_containers,
    parse_disk_usage,
    parse_image,
    parse_images,
    parse_version,
    text,
)
from tests.support.paths import load


def test_minus_one_sentinels_and_missing_fields_become_none():
    image = parse_image({"Id": "sha256:x", "Containers": -1, "SharedSize": -1})
    assert (image.containers, image.shared_size, image.size, image.created) == (
        None,
        None,
        None,
        None,
    )
    assert image.repo_tags == ()


def test_placeholder_tags_are_not_tags():
    image = parse_image(
        {"Id": "sha256:x", "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]}
    )
    assert (image.repo_tags, image.repo_digests) == ((), ())


def test_wrong_types_are_tolerated():
    image = parse_image({"Id": "sha256:x", "Size": "big", "Created": True, "RepoTags": "a:1"})
    assert (image.size, image.created, image.repo_tags) == (None, None, ())
    c = parse_container({"Id": "x", "Names": None, "Labels": {"a": 1, "b": "2"}, "State": None})
    assert (c.name, dict(c.labels), c.state) == ("x", {"b": "2"}, "")


@pytest.mark.parametrize(
    ("data", "endpoint"), [({}, "/images/json"), ("x", "/images/json"), (None, "/images/json")]
)
def test_non_list_answers_raise_one_line(data, endpoint):
    with pytest.raises(EngineDataError, match=f"^{endpoint} answered"):
        parse_images(data)


def test_non_object_entries_and_entries_without_id_are_skipped():
    assert parse_images([1, None, {"Size": 3}, {"Id": "sha256:a"}])[0].id == "sha256:a"
    assert len(parse_containers([[], {"Id": "c"}])) == 1


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 3 hours (healthy)", "healthy"),
        ("Up 1 second (health: starting)", "starting"),
        ("Up 5 minutes (unhealthy)", "unhealthy"),
        ("Up 2 seconds (Paused)", None),
        ("Up 2 hours", None),
    ],
)
def test_health_from_status_text(status, health):
    assert parse_container({"Id": "c", "State": "running", "Status": status}).health == health


def test_health_object_wins_over_status():
    c = parse_container(
        {"Id": "c", "State": "running", "Status": "Up (healthy)", "Health": {"Status": "starting"}}
    )
    assert c.health == "starting"
    c = parse_container({"Id": "c", "Status": "Up (healthy)", "Health": {"Status": "none"}})
    assert c.health is None


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("exited", "Exited (137) 5 minutes ago", 137),
        ("exited", "Exited (0) Less than a second ago", 0),
        ("running", "Up 3 hours", None),
        ("exited", "garbage", None),
    ],
)
def test_exit_code_from_status(state, status, code):
    assert parse_container({"Id": "c", "State": state, "Status": status}).exit_code == code


def test_linked_container_prefers_its_own_name():
    assert parse_container({"Id": "c", "Names": ["/web/db", "/db"]}).name == "db"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["/db"], "db"),
        (["//"], "/"),  # only the API's own "/" goes: the rest is the name as sent
        (["///x"], "//x"),
        (["/"], "c" * 12),  # nothing left: the short id, never an empty label
        ([], "c" * 12),
        (["db"], "db"),  # no prefix at all
    ],
)
def test_only_the_api_slash_is_removed_from_names(names, expected):
    assert parse_container({"Id": "c" * 64, "Names": names}).name == expected


def test_version_product_docker_and_podman():
    docker = parse_version(load("synthetic/version-1.52.json"))
    assert (docker.version, docker.api_version, docker.product) == (
        "29.0.0",
        "1.52",
        "Docker Engine",
    )
    podman = parse_version({"Version": "4.3.1", "Components": [{"Name": "Podman Engine"}]})
    assert podman.product == "Podman Engine"
    with pytest.raises(EngineDataError):
        parse_version([])


def test_api_1_44_has_no_virtual_size_and_uncounted_containers():
    images = parse_images(load("synthetic/images-1.44.json"))
    assert [(i.size, i.containers, i.repo_tags) for i in images] == [
        (187000000, None, ("nginx:1.25",)),
        (120000000, None, ()),
    ]


def test_api_1_51_counts_containers():
    assert [i.containers for i in parse_images(load("synthetic/images-1.51.json"))] == [3, 0]


def test_disk_usage_null_sections():
    df = parse_disk_usage({"LayersSize": 5, "Images": None, "Volumes": None})
    assert (df.images, df.volumes, df.build_cache) == ((), (), None)
    with pytest.raises(EngineDataError):
        parse_disk_usage([])
    with pytest.raises(EngineDataError, match="Volumes"):
        parse_disk_usage({"Volumes": "x"})


def test_a_lone_surrogate_becomes_the_replacement_character():
    (image,) = parse_images(
        json.loads('[{"Id": "sha256:a", "RepoTags": ["app:\\udc80"], "Labels": {"k\\ud800": "v"}}]')
    )
    assert image.repo_tags == ("app:\ufffd",)
    (container,) = parse_containers(
        json.loads('[{"Id": "c", "Names": ["/x\\udc80"], "Labels": {"k\\ud800": "\\udfff"}}]')
    )
    assert container.name == "x\ufffd"
    assert dict(container.labels) == {"k\ufffd": "\ufffd"}
    assert text("caf\u00e9") == "caf\u00e9"


def test_infinite_and_out_of_range_numbers_are_not_values():
    images = parse_images(
        json.loads('[{"Id": "sha256:a", "Size": 1e400}, {"Id": "sha256:b", "Size": 1e30}]')
    )
    assert [i.size for i in images] == [None, None]
    (image,) = parse_images([{"Id": "sha256:c", "Size": 2**63 - 1}])
    assert image.size == 2**63 - 1


def test_an_object_listed_twice_counts_once():
    images = parse_images([{"Id": "sha256:a", "Size": 1}, {"Id": "sha256:a", "Size": 2}])
    assert [(i.id, i.size) for i in images] == [("sha256:a", 1)]
    containers = parse_containers(
        [
            {"Id": "c1", "Names": ["/web"]},
            {"Id": "c1", "Names": ["/web"]},
            {"Id": "c2", "Names": ["/web"]},
            {"Id": "c3", "Names": ["/db"]},
        ]
    )
    assert [(c.id, c.name) for c in containers] == [("c1", "web"), ("c3", "db")]
