"""Decoding straight from bytes (msgspec) gives the records that json.loads and parsing give."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import records as records_module
from exporter.records import (
    EngineDataError,
    decode_containers,
    decode_images,
    parse_containers,
    parse_images,
)
from tests.support.paths import load

IMAGE_FILES = [
    "docker-20.10/images.json",
    "podman-4.3/images.json",
    "synthetic/images-1.44.json",
    "synthetic/images-1.51.json",
    "synthetic/images-1.52.json",
]
CONTAINER_FILES = [
    "docker-20.10/containers.json",
    "docker-20.10/containers_size.json",
    "podman-4.3/containers.json",
    "podman-4.3/containers_size.json",
    "synthetic/containers-1.52.json",
]


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_recorded_images_decode_as_they_parse(name):
    data = load(name)
    body = json.dumps(data).encode()
    assert decode_images(body) == parse_images(data)
    assert len(records_module._IMAGES.decode(body)) == len(data)  # msgspec took it itself


@pytest.mark.parametrize("name", CONTAINER_FILES)
def test_recorded_containers_decode_as_they_parse(name):
    data = load(name)
    body = json.dumps(data).encode()
    records = decode_containers(body)
    assert records == parse_containers(data)
    assert records  # the comparison is not between two empty tuples
    assert len(records_module._CONTAINERS.decode(body)) == len(data)  # msgspec took it itself


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELDS = ["Id", "Names", "Image", "ImageID", "Created", "State", "Status", "Health", "ExitCode",
          "Labels", "SizeRw", "SizeRootFs", "RepoTags", "RepoDigests", "Size", "SharedSize",
          "Containers", "Ports"]  # fmt: skip
objects = st.dictionaries(st.sampled_from(FIELDS), json_values) | json_values


numbers = st.none() | st.integers(-2, 2**63 - 1) | st.floats(-2, 1e18, allow_nan=False)
strings = st.none() | st.text(max_size=6) | st.sampled_from(["exited", "Exited (3) 1s", "running"])
# well-typed answers: the ones msgspec decodes itself
well_typed = st.fixed_dictionaries(
    {},
    optional={
        "Id": st.text(max_size=3),
        "Names": st.none() | st.lists(st.sampled_from(["/a", "/b/c", "/", "d", ""]), max_size=3),
        "RepoTags": st.none() | st.lists(st.sampled_from(["a:1", "<none>:<none>", "<none>"])),
        "RepoDigests": st.none() | st.lists(st.sampled_from(["a@sha256:1", "<none>@<none>"])),
        "Image": strings,
        "ImageID": strings,
        "State": strings,
        "Status": strings | st.sampled_from(["Up 1s (healthy)", "Up (health: starting)"]),
        "Health": st.none() | st.fixed_dictionaries({"Status": strings}),
        "ExitCode": numbers,
        "Labels": st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        "Created": numbers,
        "Size": numbers,
        "SharedSize": numbers,
        "Containers": numbers,
        "SizeRw": numbers,
        "SizeRootFs": numbers,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(objects | well_typed, max_size=4))
def test_any_answer_decodes_as_it_parses(data: list[Any]):
    body = json.dumps(data).encode()  # NaN and Infinity too, as json.dumps writes them
    assert outcome(decode_images, body) == outcome(lambda b: parse_images(json.loads(b)), body)
    assert outcome(decode_containers, body) == outcome(
        lambda b: parse_containers(json.loads(b)), body
    )
    keys = frozenset({"a", ""})
    assert outcome(lambda b: decode_containers(b, keys), body) == outcome(
        lambda b: parse_containers(json.loads(b), keys), body
    )


def test_only_the_label_keys_asked_for_are_kept():
    body = json.dumps(load("synthetic/containers-1.52.json")).encode()
    keep = frozenset({"com.docker.compose.service", "absent"})
    records = decode_containers(body, keep)
    assert [dict(r.labels) for r in records] == [
        {k: v for k, v in r.labels.items() if k in keep} for r in decode_containers(body)
    ]
    assert {"com.docker.compose.service": "web"} in [dict(r.labels) for r in records]
    assert decode_containers(body, ()) == tuple(
        replace(r, labels={}) for r in decode_containers(body)
    )


@pytest.mark.parametrize(
    "body",
    [
        b'[{"Id": "\\ud800", "Names": ["/lone-surrogate"]}]',
        b'[{"Id": "c", "Created": 1e400}]',
        b'[{"Id": "c", "Id": "d", "State": "running", "State": "exited"}]',
        b'[1, {"Id": "c"}]',
        b'\xef\xbb\xbf[{"Id": "c"}]',
    ],
)
def test_answers_msgspec_refuses_take_the_json_path(body: bytes):
    assert outcome(decode_containers, body) == outcome(
        lambda b: parse_containers(json.loads(b)), body
    )


def outcome(fn: Any, body: bytes) -> object:
    """The records, or the error: both paths must agree on either."""
    try:
        return fn(body)
    except Exception as exc:
        return type(exc), str(exc)


def test_not_json_and_wrong_shapes_raise_what_parsing_raises():
    with pytest.raises(ValueError, match=r"Expecting"):
        decode_images(b"[{]")
    with pytest.raises(EngineDataError, match="/containers/json answered dict, expected a list"):
        decode_containers(b'{"Id": "c"}')
