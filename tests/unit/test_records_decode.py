"""Decoding straight from bytes (msgspec) gives the records that json.loads and parsing give."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import records as records_module
from exporter.records import (
    ContainerStream,
    EngineDataError,
    decode_containers,
    decode_images,
    parse_containers,
    parse_images,
)
from tests.support.paths import load

IMAGE_FILES = [
    "docker-20.10/images.json",
    "docker-28.5/images.json",
    "docker-28.5-containerd/images.json",
    "podman-4.3/images.json",
    "podman-5.8/images.json",
    "synthetic/images-1.44.json",
    "synthetic/images-1.51.json",
    "synthetic/images-1.52.json",
]
CONTAINER_FILES = [
    "docker-20.10/containers.json",
    "docker-20.10/containers_size.json",
    "docker-28.5/containers_size.json",
    "docker-28.5-containerd/containers_size.json",
    "podman-4.3/containers.json",
    "podman-4.3/containers_size.json",
    "podman-5.8/containers.json",
    "podman-5.8/containers_size.json",
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
        msgspec.structs.replace(r, labels={}) for r in decode_containers(body)
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


@pytest.mark.parametrize("name", CONTAINER_FILES)
def test_a_released_answer_is_emptied_and_gives_the_same_records(name):
    data = load(name)
    keep = frozenset({"com.docker.compose.service", "com.docker.compose.project", "absent"})
    body = bytearray(json.dumps(data).encode())
    records = decode_containers(body, keep, release=True)
    assert body == b""  # freed before the records were built
    assert records == parse_containers(data, keep)
    assert records == decode_containers(json.dumps(data).encode(), keep)


def test_all_labels_keep_the_answer_they_are_decoded_from():
    """Without an allowlist each container's labels are raw JSON in the answer: it stays."""
    data = load("synthetic/containers-1.52.json")
    body = bytearray(json.dumps(data).encode())
    records = decode_containers(body, None, release=True)
    assert body == json.dumps(data).encode()
    assert records == parse_containers(data)


def test_released_images_are_emptied_and_bytes_are_left_alone():
    data = load("docker-20.10/images.json")
    body = bytearray(json.dumps(data).encode())
    assert decode_images(body, release=True) == parse_images(data)
    assert body == b""
    frozen = json.dumps(data).encode()
    assert decode_images(frozen, release=True) == parse_images(data)  # bytes: nothing to free
    assert decode_images(frozen) == parse_images(data)


def test_an_answer_msgspec_refuses_is_parsed_before_any_release():
    body = bytearray(b'[{"Id": "c", "Labels": {"a": 1, "b": "x"}, "Names": ["/n"]}]')
    (record,) = decode_containers(body, frozenset({"a", "b"}), release=True)
    assert dict(record.labels) == {"b": "x"}  # the tolerant path dropped the non-string
    assert body == b'[{"Id": "c", "Labels": {"a": 1, "b": "x"}, "Names": ["/n"]}]'


@settings(max_examples=200, deadline=None)
@given(st.lists(objects | well_typed, max_size=4), st.frozensets(st.text(max_size=3), max_size=3))
def test_any_answer_decodes_with_any_allowlist_as_it_parses(data: list[Any], keys):
    body = json.dumps(data).encode()
    assert outcome(lambda b: decode_containers(bytearray(b), keys, release=True), body) == outcome(
        lambda b: parse_containers(json.loads(b), keys), body
    )


def test_a_label_key_msgspec_cannot_name_keeps_the_raw_labels():
    text = '[{"Id": "c", "Labels": {"a\\"b": "x", "c": "y"}, "Names": ["/n"]}]'
    body = bytearray(text.encode())
    (record,) = decode_containers(body, frozenset({'a"b'}), release=True)
    assert dict(record.labels) == {'a"b': "x"}
    assert body == text.encode()  # the raw labels are read from it: not freed


@pytest.mark.parametrize("name", CONTAINER_FILES)
def test_an_answer_cut_into_pieces_decodes_as_it_parses(name, monkeypatch):
    # "Id" first, as engines write it (the recordings are stored with their keys sorted);
    # the same containers thrice: the first of each is kept
    data = [{"Id": c["Id"], **c} for c in load(name)] * 3
    body = json.dumps(data, separators=(",", ":")).encode()
    pieces = list(records_module._pieces(body, 200))
    assert len(pieces) > 2
    assert sum(len(records_module._CONTAINERS.decode(p)) for p in pieces) == len(data)
    monkeypatch.setattr(records_module, "PIECE_BYTES", 200)
    keep = frozenset({"com.docker.compose.service"})
    assert decode_containers(bytearray(body), keep, release=True) == parse_containers(data, keep)


@pytest.mark.parametrize(
    "containers",
    [
        # a nested array of objects that start with "Id": a cut there is not valid JSON
        [{"Id": f"c{i}", "Mounts": [{"Id": "m1"}, {"Id": "m2"}] * 20} for i in range(40)],
        # the separator inside a string is escaped, never a cut
        [{"Id": f"c{i}", "Labels": {"a": '},{"Id":' * 30}} for i in range(40)],
        # not Docker's shape: spaces between the containers, so nothing to cut at
        [{"Id": f"c{i}", "Status": "x" * 50} for i in range(40)],
    ],
)
def test_an_answer_that_cannot_be_cut_is_decoded_whole(containers, monkeypatch):
    monkeypatch.setattr(records_module, "PIECE_BYTES", 100)
    separators = (", ", ": ") if "Status" in containers[0] else (",", ":")
    body = json.dumps(containers, separators=separators).encode()
    keep = frozenset({"a"})
    assert decode_containers(bytearray(body), keep, release=True) == parse_containers(
        containers, keep
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(objects | well_typed, max_size=8))
def test_any_answer_in_small_pieces_decodes_as_it_parses(data: list[Any]):
    body = json.dumps(data, separators=(",", ":")).encode()
    saved = records_module.PIECE_BYTES
    records_module.PIECE_BYTES = 16
    try:
        got = outcome(lambda b: decode_containers(b, frozenset({"a"})), body)
    finally:
        records_module.PIECE_BYTES = saved
    assert got == outcome(lambda b: parse_containers(json.loads(b), frozenset({"a"})), body)


def stream_outcome(fn: Any, body: bytes) -> object:
    """As ``outcome``; where JSON is not valid, only that (the position differs when
    what came before the error was decoded in pieces; the engine client says "not valid
    JSON" either way)."""
    result = outcome(fn, body)
    if isinstance(result, tuple) and result and result[0] is json.JSONDecodeError:
        return json.JSONDecodeError
    return result


def streamed(body: bytes, keys: Any, chunk: int) -> tuple[Any, ...]:
    stream = ContainerStream(keys)
    for at in range(0, len(body), chunk):
        stream.feed(body[at : at + chunk])
    return stream.end()


@pytest.mark.parametrize("name", CONTAINER_FILES)
@pytest.mark.parametrize("chunk", [1, 7, 300, 100_000])
def test_a_streamed_answer_decodes_as_it_parses(name, chunk, monkeypatch):
    monkeypatch.setattr(records_module, "PIECE_BYTES", 500)
    data = [{"Id": c["Id"], **c} for c in load(name)] * 3
    body = json.dumps(data, separators=(",", ":")).encode()
    keep = frozenset({"com.docker.compose.service"})
    assert streamed(body, keep, chunk) == parse_containers(data, keep)
    assert streamed(body, None, chunk) == parse_containers(data)


@pytest.mark.parametrize(
    "body",
    [
        # msgspec refuses the third piece (a label that is not a string): the rest is parsed
        json.dumps(
            [
                {"Id": f"c{i}", "Names": [f"/n{i}"], "Labels": {"a": 1 if i == 25 else "x"}}
                for i in range(40)
            ],
            separators=(",", ":"),
        ).encode(),
        # a cut inside a nested array: not valid JSON, so that piece and the rest are parsed
        json.dumps(
            [{"Id": f"c{i}", "Mounts": [{"Id": "m"}] * 30} for i in range(40)],
            separators=(",", ":"),
        ).encode(),
        b'{"message": "not a list"}' + b" " * 3000,
        b"[" + b'{"Id":"c"},' * 300 + b"garbage]",
        b'\xef\xbb\xbf[{"Id": "c"}]' + b" " * 3000,
    ],
)
def test_a_streamed_answer_msgspec_refuses_ends_as_a_whole_one(body, monkeypatch):
    monkeypatch.setattr(records_module, "PIECE_BYTES", 200)
    keys = frozenset({"a"})
    assert stream_outcome(lambda b: streamed(b, keys, 64), body) == stream_outcome(
        lambda b: parse_containers(json.loads(b), keys), body
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(objects | well_typed, max_size=12), st.integers(1, 50))
def test_any_streamed_answer_decodes_as_it_parses(data: list[Any], chunk: int):
    body = json.dumps(data, separators=(",", ":")).encode()
    saved = records_module.PIECE_BYTES
    records_module.PIECE_BYTES = 16
    try:
        got = stream_outcome(lambda b: streamed(b, frozenset({"a"}), chunk), body)
    finally:
        records_module.PIECE_BYTES = saved
    keys = frozenset({"a"})
    assert got == stream_outcome(lambda b: parse_containers(json.loads(b), keys), body)


def test_a_stream_without_cuts_looks_at_each_byte_once(monkeypatch):
    """Pretty-printed (spaces between containers): no cut, and no search starts over."""
    monkeypatch.setattr(records_module, "PIECE_BYTES", 64)
    data = [{"Id": f"c{i}", "Names": [f"/n{i}"]} for i in range(200)]
    body = json.dumps(data, separators=(", ", ": ")).encode()
    stream = ContainerStream(frozenset())
    searched = []
    for at in range(0, len(body), 10):
        stream.feed(body[at : at + 10])
        searched.append(stream._look_from)
    assert not stream._cut
    assert searched[-1] > len(body) - 20  # it moved along with the bytes read
    assert stream.end() == parse_containers(data, frozenset())
