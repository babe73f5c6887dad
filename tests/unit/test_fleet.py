"""One exporter, several targets: routing, /targets, reloads with the same PID, on-scrape mode.

The engines are loopback stand-ins (tests/support/fake_engine.py); the real-engine fleet
tests are in tests/integration/test_fleet_integration.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import parse_config
from exporter.fleet import Fleet
from exporter.jobs import Scheduler
from exporter.web import make_app
from tests.support.cli_stores import add_context
from tests.support.env import clean_env
from tests.support.fake_engine import FakeEngine, synthetic_engine
from tests.support.process import ExporterProcess, exporter_command, free_port
from tests.support.promql import parse_samples, value
from tests.support.wait import wait_until
from tests.support.wsgi import call


@pytest.fixture
def engines() -> Iterator[tuple[FakeEngine, FakeEngine]]:
    a, b = synthetic_engine(), synthetic_engine()
    yield a, b
    a.close()
    b.close()


def write_fleet(path: Path, targets: dict[str, str], interval: str = "1s") -> None:
    """Write the fleet file whole (a new file renamed over the old one), so that the
    exporter's watch never reads it half-written."""
    lines = [
        "defaults:",
        f"  collect_interval: {interval}",
        "  collect_timeout: 500ms",
        "  disk_usage_interval: 0",
        "targets:",
    ]
    for name, host in targets.items():
        lines += [f"  - name: {name}", f"    host: {host}"]
    partial = path.with_name(path.name + ".partial")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)


def target_up(exp: ExporterProcess, name: str) -> float | None:
    """docker_up of /metrics?target=NAME; None while the name is unknown."""
    status, body, _ = exp.get(f"/metrics?target={name}")
    return value(parse_samples(body.decode()), "docker_up") if status == 200 else None


def refused() -> str:
    return f"tcp://127.0.0.1:{free_port()}"  # nothing listens there


def test_each_target_on_its_own_parameter_and_the_fleet_on_plain_metrics(tmp_path, engines):
    a, b = engines
    path = tmp_path / "fleet.yml"
    write_fleet(path, {"a": a.url, "b": b.url, "down": refused()})
    config = parse_config(["--config.file", str(path)], {})
    fleet = Fleet(config, Scheduler(2), {})
    fleet.load()
    for target in fleet.targets.values():
        for run in target.runners:
            run()
    app = make_app(fleet)

    status, headers, body = call(app, "/metrics?target=a")
    assert (status, headers["Content-Type"]) == (
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
    )
    samples = parse_samples(body.decode())
    assert value(samples, "docker_up") == 1.0 and value(samples, "docker_images") == 4.0
    assert not [k for k in samples if k[0].startswith("docker_exporter_target")]
    assert value(samples, "process_open_fds") is not None  # the process collecting it
    down = parse_samples(call(app, "/metrics?target=down")[2].decode())
    assert value(down, "docker_up") == 0.0 and value(down, "docker_images") is None

    assert call(app, "/metrics?target=nope")[::2] == ("404 Not Found", b"Unknown target 'nope'\n")
    assert call(app, "/metrics?target=")[::2] == (
        "400 Bad Request",
        b"The target parameter is empty\n",
    )
    own = parse_samples(call(app, "/metrics")[2].decode())
    assert value(own, "docker_up") is None  # the exporter's own metrics, no engine's
    assert value(own, "docker_exporter_target_up", target="a") == 1.0
    assert value(own, "docker_exporter_target_up", target="down") == 0.0
    assert value(own, "docker_exporter_target_collecting", target="b") == 1.0
    assert value(own, "docker_exporter_config_last_reload_successful") == 1.0
    assert value(own, "docker_exporter_target_info", target="b", host=b.url, source="file") == 1.0
    assert value(own, "process_open_fds") is not None

    status, headers, body = call(app, "/targets")
    assert (status, headers["Content-Type"]) == ("200 OK", "application/json")
    assert json.loads(body) == [
        {
            "targets": [name],
            "labels": {
                "__meta_docker_inventory_source": "file",
                "__meta_docker_inventory_host": host,
            },
        }
        for name, host in sorted(
            {"a": a.url, "b": b.url, "down": fleet.targets["down"].config.engine.host}.items()
        )
    ]


def test_reload_on_sighup_with_the_same_pid(tmp_path, engines, run_exporter):
    a, b = engines
    path = tmp_path / "fleet.yml"
    write_fleet(path, {"a": a.url}, interval="2s")
    exp = run_exporter("--config.file", str(path), "--config.watch-interval", "0", env=clean_env())
    pid = exp.pid

    def up(name: str) -> float | None:
        return target_up(exp, name)

    def reload(targets: dict[str, str]) -> float:
        write_fleet(path, targets, interval="2s")
        os.kill(pid, signal.SIGHUP)
        return time.monotonic()

    # The waits are generous (a loaded machine is slow); the reload is what they wait for.
    wait_until(lambda: up("a") == 1.0, what="a up")
    reload({"a": a.url, "b": b.url})  # add b
    wait_until(lambda: up("b") == 1.0, 15.0, what="b added and collected")
    reload({"a": refused(), "b": b.url})  # change a
    wait_until(lambda: up("a") == 0.0, 15.0, what="a changed")
    reload({"a": a.url})  # remove b
    wait_until(lambda: exp.get("/metrics?target=b")[0] == 404, 15.0, what="b removed")
    wait_until(lambda: up("a") == 1.0, 15.0, what="a back on its engine")  # before the next reload
    assert [g["targets"] for g in json.loads(exp.get("/targets")[1])] == [["a"]]
    path.write_text("targets: [\n")  # broken
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: "reload (SIGHUP) failed" in exp.log(), 15.0, what="the failure logged")
    assert exp.running() and exp.pid == pid
    assert up("a") == 1.0 and exp.get("/metrics?target=b")[0] == 404
    own = exp.samples()
    assert value(own, "docker_exporter_config_last_reload_successful") == 0.0
    assert (
        exp.log().count(
            f"reload (SIGHUP) failed, the running targets stay: {path}: line 2: not valid YAML:"
            " expected the node content, but found '<stream end>'"
        )
        == 1
    )
    assert "Traceback" not in exp.log()


def test_a_changed_file_is_reloaded_without_a_signal(tmp_path, engines, run_exporter):
    a, b = engines
    path = tmp_path / "fleet.yml"
    write_fleet(path, {"a": a.url})
    exp = run_exporter(
        "--config.file", str(path), "--config.watch-interval", "200ms", env=clean_env()
    )
    write_fleet(path, {"a": a.url, "b": b.url})
    # The exporter swaps in the new targets, then logs the reload: wait for the line, don't
    # assert it the moment b answers (under load the line came a moment after).
    wait_until(lambda: exp.get("/metrics?target=b")[0] == 200, 30.0, what="b added by the watch",
               diagnostics=exp.log)  # fmt: skip
    wait_until(lambda: "(a watched file changed): added b" in exp.log(), 30.0,
               what="the reload logged", diagnostics=exp.log)  # fmt: skip
    assert "reloaded" in exp.log()


def test_collect_only_while_scraped(tmp_path, engines, run_exporter):
    a, _ = engines
    path = tmp_path / "fleet.yml"
    write_fleet(path, {"a": a.url})
    exp = run_exporter("--config.file", str(path), "--collect.on-scrape", env=clean_env())
    time.sleep(1.5)
    assert a.count("/images/json") == 0  # nobody scraped it: not collected
    status, body, _ = exp.get("/metrics?target=a")
    cold = parse_samples(body.decode())
    # the cold first scrape: like an exporter that has just started
    assert status == 200 and value(cold, "docker_up") == 0.0
    assert value(cold, "docker_exporter_collection_success", collector="inventory") == 0.0
    wait_until(
        lambda: value(parse_samples(exp.get("/metrics?target=a")[1].decode()), "docker_up") == 1.0,
        5.0,
        what="collected after the first scrape",
    )
    assert value(exp.samples(), "docker_exporter_target_collecting", target="a") == 1.0
    # unscraped for 3 intervals (1s): collection stops, and the engine hears no more
    wait_until(
        lambda: value(exp.samples(), "docker_exporter_target_collecting", target="a") == 0.0,
        8.0,
        what="idle target stopped",
    )
    stopped = a.count("/images/json")
    time.sleep(2.5)
    assert a.count("/images/json") == stopped
    assert "a: not scraped for a while, collection stops" in exp.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--config.file", "f.yml", "--docker.host", "unix:///x.sock"],
            "--docker.host does not go with --config.file: give each target's engine in the file",
        ),
        (["--collect.on-scrape"], "--collect.on-scrape needs --config.file"),
        (["--collect.workers", "0"], "--collect.workers '0' is not a number from 1 to 1024"),
    ],
)
def test_fleet_flags_that_do_not_fit(args, message):
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(args, {})
    assert str(err.value) == message


def test_a_bad_config_file_ends_start_up_with_one_line_and_exit_2(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(
        "targets:\n  - name: b1\n    host: tcp://10.0.0.1:2376\n    tls: {ca: /nope.pem}\n"
    )
    result = subprocess.run(
        [*exporter_command(), "--config.file", str(path)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"docker-inventory-exporter: {path}: target 'b1': tls.ca: cannot read the engine CA file"
        " /nope.pem: No such file or directory\n"
    )


def test_a_new_docker_context_is_found_without_a_signal(tmp_path, engines, run_exporter):
    a, _ = engines
    docker_config = tmp_path / "docker-config"
    path = tmp_path / "fleet.yml"
    write_fleet(path, {})
    with path.open("a") as f:
        f.write(f"discover:\n  docker_contexts: {docker_config}\n")
    exp = run_exporter(
        "--config.file", str(path), "--config.watch-interval", "200ms", env=clean_env()
    )
    assert json.loads(exp.get("/targets")[1]) == []
    add_context(docker_config, "ctx1", a.url)
    wait_until(lambda: target_up(exp, "ctx1") == 1.0, 5.0, what="the new context collected")
    (group,) = json.loads(exp.get("/targets")[1])
    assert (group["targets"], group["labels"]["__meta_docker_inventory_source"]) == (
        ["ctx1"],
        "docker context",
    )
