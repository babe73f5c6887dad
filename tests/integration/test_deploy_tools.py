"""The deploy files run through the tools that consume them, no engine needed:

* every compose/stack file validates with Debian's docker-compose (``config``);
* ``promtool check config`` passes for the deploy Prometheus configs (with the alert rules
  and targets files beside them, as they are laid out at run time);
* the file_sd relabeling is run for real by a Prometheus on loopback-only targets (the
  dockerswarm_sd one runs against a real swarm in test_container_image.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.env import clean_env, need
from tests.support.paths import REPO
from tests.support.process import free_port
from tests.support.prometheus import RunPrometheus, run_promtool

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"
STACK = DEPLOY / "swarm" / "docker-stack.yml"
COMPOSE_FILES = (REPO / "docker-compose.yml", DEPLOY / "standalone" / "docker-compose.yml", STACK)
# The files `docker compose up` runs as they are: they start with no variable set.
NO_VARIABLE_FILES = COMPOSE_FILES[:2]
SWARM_PROMETHEUS = DEPLOY / "swarm" / "prometheus.yml"
FILE_SD_PROMETHEUS = DEPLOY / "standalone" / "prometheus.yml"
TARGETS_EXAMPLE = DEPLOY / "standalone" / "targets" / "docker-hosts.yml"
ALERTS = REPO / "prometheus" / "alerts.yml"

DOCKER_COMPOSE = "/usr/bin/docker-compose"
PUBLISHED_IMAGE: str = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())[
    "env"
]["IMAGE"]
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
EXPORTER = "docker-inventory-exporter"
TEST_GID = "4242"


def compose_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No DOCKER_*, COMPOSE_* or EXPORTER* variable of the user's reaches the compose file."""
    return clean_env(extra, drop_prefixes=("EXPORTER",))


# --------------------------------------------------------------------------- compose files


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_compose_config_validates(path: Path) -> None:
    """The compose files validate with no variable set at all; the Swarm stack needs
    DOCKER_GID (swarm services take no group_add), and says so when it is missing."""
    need(None if os.access(DOCKER_COMPOSE, os.X_OK) else "docker-compose is not installed")

    def config(extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER_COMPOSE, "--file", str(path), "config"],
            capture_output=True,
            text=True,
            env=compose_env(extra),
            cwd=path.parent,
            timeout=60,
            check=False,
        )

    if path in NO_VARIABLE_FILES:
        proc = config()
        assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
        service = yaml.safe_load(proc.stdout)["services"][EXPORTER]
        assert "group_add" not in service and "volumes" not in service
        assert service["image"] == f"{PUBLISHED_IMAGE}:{VERSION}"
        return
    proc = config({"DOCKER_GID": TEST_GID})
    assert proc.returncode == 0, proc.stderr
    service = yaml.safe_load(proc.stdout)["services"][EXPORTER]
    assert service["user"] == f"10001:{TEST_GID}"
    # ...and forgetting it is an error that says what to do, not a silent default
    missing = config()
    assert missing.returncode != 0 and "DOCKER_GID" in missing.stderr, missing


# --------------------------------------------------------------------------- promtool


def _laid_out(config: Path, dest: Path, targets: Path | None = None) -> Path:
    """config as /etc/prometheus/prometheus.yml would see it: alerts.yml (+targets/) beside."""
    shutil.copy2(config, dest / "prometheus.yml")
    shutil.copy2(ALERTS, dest / "alerts.yml")
    if targets is not None:
        shutil.copytree(targets, dest / "targets")
    return dest / "prometheus.yml"


@pytest.mark.parametrize(
    "config", [SWARM_PROMETHEUS, FILE_SD_PROMETHEUS], ids=lambda p: str(p.relative_to(REPO))
)
def test_promtool_check_config(config: Path, tmp_path: Path) -> None:
    targets = TARGETS_EXAMPLE.parent if config == FILE_SD_PROMETHEUS else None
    laid_out = _laid_out(config, tmp_path, targets)
    proc = run_promtool("check", "config", str(laid_out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"SUCCESS" in proc.stdout


def test_file_sd_names_instances_after_hosts(tmp_path: Path, run_prometheus: RunPrometheus) -> None:
    """The standalone config's relabeling, run by Prometheus itself. The targets are on
    loopback (closed ports): the example file's hosts are placeholders, never contacted."""
    targets = tmp_path / "targets-src"
    targets.mkdir()
    closed = [free_port() for _ in range(3)]
    (targets / "docker-hosts.yml").write_text(
        yaml.safe_dump(
            [
                {"targets": [f"localhost:{closed[0]}", f"127.0.0.1:{closed[1]}"],
                 "labels": {"env": "test"}},
                {"targets": [f"127.0.0.2:{closed[2]}"], "labels": {"instance": "build-box"}},
            ]
        )
    )  # fmt: skip
    config = _laid_out(FILE_SD_PROMETHEUS, tmp_path, targets)
    prom = run_prometheus(config)
    prom.wait_ready()
    active = prom.wait("3 active targets", lambda: len(t := prom.active_targets()) >= 3 and t)
    got = {t["labels"]["instance"]: t["labels"] for t in active}
    assert set(got) == {"localhost", "127.0.0.1", "build-box"}, got
    assert got["localhost"]["env"] == "test" and got["localhost"]["job"] == "docker-inventory"
    assert {t["scrapeUrl"] for t in active} == {
        f"http://localhost:{closed[0]}/metrics",
        f"http://127.0.0.1:{closed[1]}/metrics",
        f"http://127.0.0.2:{closed[2]}/metrics",
    }
