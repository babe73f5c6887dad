"""The conventions of a Prometheus exporter: build info, telemetry path, exporter metrics off,
and log lines in logfmt or JSON."""

from __future__ import annotations

import json
import logging
import platform

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.buildinfo import BuildInfoCollector
from exporter.logs import JSONFormatter, LogfmtFormatter
from tests.support.logs import messages
from tests.support.promql import parse_samples

OFFLINE = ("--docker.host", "tcp://127.0.0.1:9", "--collect.disk-usage-interval", "0")


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("exporter.jobs", level, __file__, 1, message, (), None)


def test_logfmt_is_one_line_with_the_message_quoted():
    line = LogfmtFormatter().format(record('GET /images/json: "bad"\nERROR forged'))
    assert "\n" not in line
    assert line.split(" ", 1)[1].startswith("level=error source=exporter.jobs msg=")
    assert messages(line) == ['GET /images/json: "bad"\nERROR forged']
    plain = LogfmtFormatter().format(record("recovered", logging.INFO))
    assert plain.endswith(" level=info source=exporter.jobs msg=recovered")


def test_json_lines():
    line = JSONFormatter().format(record("a\nb", logging.WARNING))
    data = json.loads(line)
    assert (data["level"], data["source"], data["msg"]) == ("warn", "exporter.jobs", "a\nb")
    assert data["ts"].endswith("Z")


def test_build_info_in_node_exporter_style():
    registry = CollectorRegistry()
    registry.register(BuildInfoCollector())
    labels = {"version": __version__, "revision": "unknown",
              "python_version": platform.python_version()}  # fmt: skip
    assert registry.get_sample_value("docker_exporter_build_info", labels) == 1.0


def test_telemetry_path_and_exporter_metrics(run_exporter):
    exp = run_exporter(*OFFLINE)
    samples = exp.samples()
    assert any(name == "docker_exporter_build_info" for name, _ in samples)
    assert any(name.startswith("process_") for name, _ in samples)

    custom = run_exporter(*OFFLINE, "--web.telemetry-path=/inventory/metrics",
                          "--web.disable-exporter-metrics")  # fmt: skip
    status, body, _ = custom.get("/inventory/metrics")
    assert status == 200
    names = {name for name, _ in parse_samples(body.decode())}
    assert "docker_up" in names and "docker_exporter_collection_success" in names
    assert not [n for n in names if n.startswith("process_") or n.endswith("build_info")]
    assert custom.get("/metrics")[0] == 404
    assert b'href="inventory/metrics"' in custom.get("/")[1]


def test_log_format_json(run_exporter):
    exp = run_exporter(*OFFLINE, "--log.format=json")
    exp.wait_until(lambda: "inventory job" in exp.log(), 30, "a failure logged")
    # "listening" is the first line however busy the machine: the jobs start after it (they
    # started before it, and on a loaded machine the job's failure came first)
    lines = [json.loads(line) for line in exp.log().splitlines()]
    assert lines[0]["msg"].startswith("listening on 127.0.0.1:")
    assert {"ts", "level", "source", "msg"} == set(lines[0])


def test_bad_telemetry_paths_are_refused():
    import subprocess

    from tests.support.process import exporter_command

    for path in ("metrics", "/-/healthy", "/"):
        result = subprocess.run([*exporter_command(), f"--web.telemetry-path={path}"],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert result.returncode == 2
        assert "--web.telemetry-path" in result.stderr and "Traceback" not in result.stderr
