"""The command line: bad input is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from exporter.cli import parse_config
from exporter.config import JobSchedule, Schedules
from tests.support.env import clean_env
from tests.support.process import exporter_command


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = clean_env(env)
    return subprocess.run(
        [*exporter_command(), *args], capture_output=True, text=True, env=full, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["--log.level", "verbose"], {}, "invalid choice: 'verbose'"),
        (["--collect.interval", "soon"], {}, "--collect.interval 'soon' is not a duration"),
        (
            ["--collect.timeout", "20s"],
            {},
            "--collect.timeout (20s) must not be longer than --collect.interval (15s)",
        ),
        (["--collect.interval", "-1s"], {}, "--collect.interval '-1s' is negative"),
        (["--collect.interval", "1ms"], {}, "--collect.interval '1ms' is shorter than 1s"),
        (["--collect.interval", "80000000h"], {}, "longer than the maximum of 1w"),
        (["--docker.host", ""], {}, "--docker.host is empty"),
        (["--collect.max-answer-size", "lots"], {}, "is not a size like 64MiB"),
        (["--web.listen-address", "9487"], {}, "is not HOST:PORT or :PORT"),
        ([], {"DOCKER_HOST": "tcp//oops"}, "DOCKER_HOST 'tcp//oops' is not a unix:// or tcp://"),
        (
            [],
            {
                "DOCKER_HOST": "tcp://127.0.0.1:2376",
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": "/nonexistent",
            },
            "cannot read the engine CA file /nonexistent/ca.pem: No such file or directory",
        ),
        (
            ["--docker.host", "tcp://127.0.0.1:1", "--docker.tls-cert", "/x.pem"],
            {},
            "needs its key",
        ),
        (["--collect.disk-usage-resources", "images,disks"], {}, "unknown 'disks'"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(args, env, message):
    result = run(*args, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("docker-inventory-exporter: ")
    assert message in lines[0]


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run(
            "--web.listen-address", f"127.0.0.1:{port}", "--docker.host", "unix:///nonexistent.sock"
        )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_help_and_version():
    assert run("--version").stdout.startswith("docker-inventory-exporter 0.")
    assert "--collect.disk-usage-interval" in run("--help").stdout


def test_defaults():
    config = parse_config([], {})
    assert (config.listen_host, config.listen_port) == ("", 9487)
    assert config.target.engine.host == "unix:///var/run/docker.sock"
    settings = config.target.settings
    assert settings.schedules == Schedules(
        JobSchedule(15, 5), JobSchedule(300, 120), JobSchedule(0, 120), JobSchedule(15, 5)
    )
    assert settings.container_labels == (
        "com.docker.compose.project",
        "com.docker.compose.service",
    )
    assert (config.log_level, config.workers, config.collect_on_scrape) == ("info", 8, False)
    assert config.config_file is None


def test_a_short_interval_alone_is_accepted_and_the_timeout_follows_it():
    config = parse_config(["--collect.interval=2s", "--collect.disk-usage-interval=1m"], {})
    schedules = config.target.settings.schedules
    assert schedules.inventory == JobSchedule(2, 2)
    assert schedules.disk_usage == JobSchedule(60, 60)
    config = parse_config(["--collect.interval=1h30m", "--collect.timeout=1m"], {})
    assert config.target.settings.schedules.inventory == JobSchedule(5400, 60)


def test_healthcheck_fails_without_a_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("--healthcheck", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "docker-inventory-exporter" in result.stdout


def test_tuning_for_scrapes_during_collections():
    """The switch interval is 0.1 ms and start-up's objects are out of every GC pass."""
    import gc

    from exporter.cli import SWITCH_INTERVAL, freeze_start_up, tune_threads

    saved = sys.getswitchinterval()
    try:
        tune_threads()
        # kept in whole microseconds: 0.0001 reads back as 9.999999999999999e-05
        assert SWITCH_INTERVAL == 0.0001
        assert round(sys.getswitchinterval() * 1e6) == 100
        freeze_start_up()
        assert gc.get_freeze_count() > 1000  # every module and class of this test process
    finally:
        gc.unfreeze()
        sys.setswitchinterval(saved)
