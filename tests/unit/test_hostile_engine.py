"""Hostile or broken engine answers, each followed by a good one, against the real process.

For each: no crash, memory bounded, /metrics stays fast, stale data is dropped (or the bad
value left out), the cause is logged once however often it repeats, and the exporter
recovers within one interval once the engine answers properly again.
"""

from __future__ import annotations

import gzip
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_engine import FakeEngine, Raw
from tests.support.logs import messages
from tests.support.paths import load
from tests.support.process import ExporterProcess
from tests.support.promql import Samples, value
from tests.support.wait import wait_until

INTERVAL = 1.0
IMAGES = load("synthetic/images-1.52.json")
CONTAINERS = load("synthetic/containers-1.52.json")


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    engine = FakeEngine(
        {
            "/version": load("synthetic/version-1.52.json"),
            "/images/json": IMAGES,
            "/containers/json": CONTAINERS,
        }
    )
    yield engine
    engine.close()


def start(run_exporter: Any, fake: FakeEngine, *extra: str) -> ExporterProcess:
    exp: ExporterProcess = run_exporter(
        "--docker.host",
        fake.url,
        "--collect.interval",
        "1s",
        "--collect.disk-usage-interval",
        "0",
        "--collect.max-answer-size",
        "1MiB",
        *extra,
    )
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    return exp


def full_log(exp: ExporterProcess) -> str:
    """Every message the exporter logged, one a line."""
    return "\n".join(messages(exp.log_path.read_text(errors="replace")))


def peak_rss_kib(exp: ExporterProcess) -> int:
    for line in Path(f"/proc/{exp.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def scrapes_answered(exp: ExporterProcess, seconds: float) -> int:
    """Scrape for ``seconds``; each must be answered (metrics_text fails otherwise).

    How fast is not asserted: a loaded machine stretches it without anything being wrong.
    """
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        exp.metrics_text()
        count += 1
        time.sleep(0.05)
    return count


def recovers(exp: ExporterProcess, fake: FakeEngine, path: str, good: Any) -> None:
    fake.set(path, good)
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0, timeout=30)


def failing_cycle(
    exp: ExporterProcess, fake: FakeEngine, path: str, answer: Any, log_line: str
) -> Samples:
    """Serve ``answer`` for several runs: the data is dropped, the cause logged once."""
    fake.set(path, answer)
    samples = exp.wait_for(lambda s: value(s, "docker_up") == 0.0, timeout=10)
    assert value(samples, "docker_images") is None  # stale data dropped, not served
    errors_at_first = value(
        samples, "docker_exporter_collection_errors_total", collector="inventory"
    )
    assert scrapes_answered(exp, 3 * INTERVAL) > 0
    samples = exp.samples()
    assert value(samples, "docker_up") == 0.0
    # more failed runs happened, and the cause was logged once for all of them
    more = value(samples, "docker_exporter_collection_errors_total", collector="inventory")
    assert errors_at_first is not None and more is not None and more >= errors_at_first + 2
    assert full_log(exp).count(log_line) == 1, full_log(exp)
    return samples


def answer_bytes(handler: BaseHTTPRequestHandler, body: bytes, **headers: str) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    for name, text in headers.items():
        handler.wfile.write(f"{name.replace('_', '-')}: {text}\r\n".encode())
    handler.wfile.write(b"\r\n" + body)


def drip(body: bytes, headers_too: bool) -> Raw:
    """One byte every 0.2 s: never idle long enough to trip a per-read timeout."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        if not headers_too:
            handler.wfile.write(head)
            head = b""
        for byte in head + body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.2)

    return Raw(write)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_dripping_engine_is_cut_at_the_deadline(fake, run_exporter, headers_too):
    exp = start(run_exporter, fake, "--collect.timeout", "500ms")
    failing_cycle(
        exp,
        fake,
        "/images/json",
        drip(json.dumps(IMAGES).encode(), headers_too),
        "inventory job: GET /images/json: no answer within 0.5s",
    )
    samples = exp.samples()
    duration = value(samples, "docker_exporter_collection_duration_seconds", collector="inventory")
    # the whole request is cut at 0.5 s, not each read: a per-read timeout would let the drip
    # (0.2 s a byte) run for minutes. The upper bound is that, with room for a loaded machine.
    assert duration is not None and 0.5 <= duration < 10
    recovers(exp, fake, "/images/json", IMAGES)


def test_ready_comes_at_the_deadline_when_the_first_answer_drips(fake, run_exporter):
    fake.set("/images/json", drip(json.dumps(IMAGES).encode(), False))
    # run_exporter waits for /-/ready; the drip would take minutes, so ready came at the 1 s
    # deadline, not with the answer (or the wait would have given up, saying so).
    assert len(json.dumps(IMAGES)) * 0.2 > 60
    exp = run_exporter(
        "--docker.host",
        fake.url,
        "--collect.interval",
        "2s",
        "--collect.timeout",
        "1s",
        "--collect.disk-usage-interval",
        "0",
    )  # waits for /-/ready
    assert value(exp.samples(), "docker_up") == 0.0


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    # 100 MB of JSON whitespace that gzip packs into about 100 KB
    return gzip.compress(b"[" + b" " * 100_000_000 + b"]", compresslevel=9, mtime=0)


def test_a_gzip_bomb_stops_at_the_size_cap(fake, run_exporter, gzip_bomb):
    exp = start(run_exporter, fake)
    assert len(gzip_bomb) < 200_000
    bomb = Raw(
        lambda h: answer_bytes(
            h, gzip_bomb, Content_Encoding="gzip", Content_Length=str(len(gzip_bomb))
        )
    )
    failing_cycle(
        exp,
        fake,
        "/images/json",
        bomb,
        "inventory job: GET /images/json: the answer is larger than 1048576 bytes "
        "(--collect.max-answer-size); not read",
    )
    assert peak_rss_kib(exp) < 100_000  # 100 MB would have been decoded
    recovers(exp, fake, "/images/json", IMAGES)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_refused(fake, run_exporter, declared):
    exp = start(run_exporter, fake)
    big = b"[" + b'{"Id":"sha256:x"},' * 1_000_000 + b'{"Id":"sha256:y"}]'  # 18 MB

    def write(handler: BaseHTTPRequestHandler) -> None:
        if declared:
            answer_bytes(handler, big, Content_Length=str(len(big)))
            return
        answer_bytes(handler, b"", Transfer_Encoding="chunked")
        for start_at in range(0, len(big), 65536):
            chunk = big[start_at : start_at + 65536]
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    failing_cycle(
        exp,
        fake,
        "/images/json",
        Raw(write),
        "inventory job: GET /images/json: the answer is larger than 1048576 bytes",
    )
    assert peak_rss_kib(exp) < 100_000
    recovers(exp, fake, "/images/json", IMAGES)


def test_a_redirect_is_an_error_and_never_followed(fake, run_exporter):
    foreign = FakeEngine({"/images/json": [{"Id": "sha256:" + "f" * 64, "Size": 1}]})
    try:
        exp = start(run_exporter, fake)
        target = foreign.url.replace("tcp://", "http://") + "/images/json"
        redirect = Raw(
            lambda h: h.wfile.write(
                f"HTTP/1.1 301 Moved\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        )
        failing_cycle(
            exp,
            fake,
            "/images/json",
            redirect,
            "inventory job: GET /images/json: the engine answered a redirect (HTTP 301), "
            f'which the Engine API never does; not followed to "{target}"',
        )
        assert foreign.count("/images/json") == 0
        recovers(exp, fake, "/images/json", IMAGES)
    finally:
        foreign.close()


def test_varying_error_text_is_logged_once(fake, run_exporter):
    exp = start(run_exporter, fake)

    def bad_gateway() -> Raw:
        def write(handler: BaseHTTPRequestHandler) -> None:
            body = json.dumps({"message": f"bad gateway, request id {uuid.uuid4()}"}).encode()
            handler.wfile.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )

        return Raw(write)

    failing_cycle(
        exp, fake, "/images/json", bad_gateway(), "GET /images/json: engine answered HTTP 502"
    )
    log = full_log(exp)
    assert 'engine answered HTTP 502 "bad gateway, request id ' in log
    recovers(exp, fake, "/images/json", IMAGES)

    # cut at a different point every time, with the full length announced
    full = json.dumps(IMAGES).encode()
    rng = random.Random(9)

    def truncated(handler: BaseHTTPRequestHandler) -> None:
        cut = rng.randrange(1, len(full) - 1)
        answer_bytes(handler, full[:cut], Content_Length=str(len(full)))

    failing_cycle(
        exp,
        fake,
        "/images/json",
        Raw(truncated),
        "inventory job: GET /images/json: the engine closed the connection mid-answer",
    )
    recovers(exp, fake, "/images/json", IMAGES)


def test_a_newline_in_the_engine_version_cannot_forge_a_log_line(fake, run_exporter):
    fake.set("/version", dict(load("synthetic/version-1.52.json"), Version="29.0.0\nERROR forged"))
    exp = start(run_exporter, fake)
    lines = full_log(exp).splitlines()
    assert not any(line.startswith("ERROR forged") for line in lines)
    assert any('"29.0.0\\nERROR forged"' in line for line in lines)


def raw_json(text: str) -> Raw:
    return Raw(lambda h: answer_bytes(h, text.encode(), Content_Length=str(len(text.encode()))))


def test_a_lone_surrogate_is_replaced_not_fatal(fake, run_exporter):
    exp = start(run_exporter, fake)
    image = dict(IMAGES[0], RepoTags=["app:\udc80"])
    # json.dumps escapes the lone surrogate as \\udc80, as a hostile engine would send it
    fake.set("/images/json", raw_json(json.dumps([image, *IMAGES[1:]])))
    samples = exp.wait_for(
        lambda s: any(
            name == "docker_image_tag_info" and ("tag", "\ufffd") in labels for name, labels in s
        ),
        timeout=10,
    )
    assert value(samples, "docker_up") == 1.0
    assert "Traceback" not in full_log(exp)
    assert scrapes_answered(exp, 1.0) > 0


def test_an_infinite_size_leaves_out_that_value_only(fake, run_exporter):
    exp = start(run_exporter, fake)
    first = IMAGES[0]
    text = json.dumps([dict(first, Size=0), *IMAGES[1:]]).replace('"Size": 0', '"Size": 1e400', 1)
    fake.set("/images/json", raw_json(text))
    short = first["Id"].split(":")[1][:12]

    def no_size(s: Samples) -> bool:
        sizes = [dict(lb) for n, lb in s if n == "docker_image_size_bytes"]
        return len(sizes) == len(IMAGES) - 1

    samples = exp.wait_for(no_size, timeout=10)
    assert value(samples, "docker_up") == 1.0
    assert value(samples, "docker_images") == len(IMAGES)
    assert not any(
        n == "docker_image_size_bytes" and ("image_id", short) in lb for n, lb in samples
    )
    assert "OverflowError" not in full_log(exp)


def test_duplicates_are_counted_and_exported_once(fake, run_exporter):
    exp = start(run_exporter, fake)
    before = exp.metrics_text()
    renamed = dict(CONTAINERS[0], Id="f" * 64)  # another Id, the same name
    fake.set("/images/json", [*IMAGES, IMAGES[0]])
    fake.set("/containers/json", [*CONTAINERS, CONTAINERS[0], renamed])
    wait_until(lambda: fake.count("/containers/json") >= 3)
    time.sleep(2 * INTERVAL)
    after = exp.metrics_text()
    lines = [line for line in after.splitlines() if not line.startswith("#")]
    assert len(lines) == len(set(lines))
    series: Callable[[str], list[str]] = lambda text: [  # noqa: E731
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith("docker_") and not line.startswith("docker_exporter_")
    ]
    assert series(after) == series(before)
    assert value(exp.samples(), "docker_images") == len(IMAGES)
