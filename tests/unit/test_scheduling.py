"""The real exporter process with its scheduler, against a stand-in engine that misbehaves."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_engine import synthetic_engine
from tests.support.logs import messages
from tests.support.paths import load
from tests.support.promql import value


@pytest.fixture
def fake():
    engine = synthetic_engine()
    yield engine
    engine.close()


FAST = ("--collect.interval", "1s", "--collect.timeout", "500ms")


def test_hanging_df_never_delays_inventory_or_scrapes(fake, run_exporter):
    fake.delays["/system/df"] = 30.0  # far beyond the df timeout
    exp = run_exporter(
        "--docker.host",
        fake.url,
        *FAST,
        "--collect.disk-usage-interval",
        "2s",
        "--collect.disk-usage-timeout",
        "1500ms",
    )
    first = exp.wait_for(
        lambda s: value(s, "docker_exporter_collection_errors_total", collector="disk_usage") == 1.0
    )
    t0 = value(first, "docker_exporter_last_success_timestamp_seconds", collector="inventory")
    # Scrapes while /system/df hangs are all answered (metrics_text fails on any other answer);
    # how fast is not asserted: load stretches it (tests/bench_scale.py measures it).
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        exp.metrics_text()
        time.sleep(0.1)
    samples = exp.samples()
    assert value(samples, "docker_exporter_collection_success", collector="disk_usage") == 0.0
    assert value(samples, "docker_exporter_collection_success", collector="inventory") == 1.0
    assert value(samples, "docker_exporter_collection_skipped_total", collector="inventory") == 0.0
    t1 = value(samples, "docker_exporter_last_success_timestamp_seconds", collector="inventory")
    assert t0 is not None and t1 is not None and t1 >= t0 + 2
    assert value(samples, "docker_disk_usage_bytes", resource="images") is None
    assert value(samples, "docker_up") == 1.0
    # the df cause is logged once, however many runs fail
    assert exp.log().count("disk_usage job: GET /system/df: no answer within 1.5s") == 1


def test_garbage_and_outage_never_stop_the_exporter(fake, run_exporter):
    exp = run_exporter(
        "--docker.host",
        fake.url,
        *FAST,
        "--collect.disk-usage-interval",
        "0",
    )
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    fake.set("/containers/json", b"\x00\xffnot json")
    exp.wait_for(lambda s: value(s, "docker_up") == 0.0)
    samples = exp.samples()
    assert value(samples, "docker_images") is None
    assert not [k for k in samples if k[0].startswith("docker_container_")]
    fake.set("/containers/json", load("synthetic/containers-1.52.json"))
    samples = exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    assert value(samples, "docker_containers", state="running") == 1.0
    assert exp.proc.poll() is None
    log = exp.log()
    assert "Traceback" not in log
    assert (
        log.count("inventory job: GET /containers/json: the engine's answer is not valid JSON") == 1
    )
    assert "inventory job: recovered" in log


def test_a_run_due_while_the_previous_waits_for_a_worker_is_skipped(fake, run_exporter):
    """One worker, held by a hanging /system/df: inventory runs queue behind it; a run that
    falls due while the previous one still waits is skipped and counted, never run twice."""
    fake.delays["/system/df"] = 30.0
    exp = run_exporter(
        "--docker.host", fake.url, "--collect.workers", "1",
        "--collect.interval", "1s", "--collect.timeout", "500ms",
        "--collect.disk-usage-interval", "2s", "--collect.disk-usage-timeout", "1900ms",
    )  # fmt: skip
    s = exp.wait_for(
        lambda s: (
            (value(s, "docker_exporter_collection_skipped_total", collector="inventory") or 0) >= 2
        )
    )
    assert value(s, "docker_exporter_collection_success", collector="inventory") == 1.0
    assert value(s, "docker_exporter_collection_errors_total", collector="inventory") == 0.0
    assert value(s, "docker_exporter_collection_success", collector="disk_usage") == 0.0
    assert exp.log().count("inventory job: a run was skipped") == 1


def test_sigterm_exits_at_once_even_with_a_request_in_flight(fake, run_exporter):
    fake.delays["/system/df"] = 30.0
    exp = run_exporter("--docker.host", fake.url, "--collect.disk-usage-timeout", "25s")
    exp.wait_for(lambda s: fake.count("/system/df") == 1)
    # stop() sends SIGTERM and kills after 15 s: an exit status of 0 means the exporter did
    # not wait for the request in flight (its timeout is 25 s, the engine's answer 30 s away).
    assert exp.stop(timeout=15) == 0
    assert messages(exp.log())[-1] == "shutting down"
