"""The compose demo, the fleet files in deploy/ and their README docs, read as files.

* the Swarm stack is held to what ``docker stack deploy`` accepts (a key check here, plus
  ``docker stack config`` when a client that has it is installed);
* images are pinned; the files the stacks mount exist;
* the socket proxy opens exactly the API sections the exporter's code requests.

docker-compose, promtool and Prometheus run these files in
tests/integration/test_deploy_tools.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.engine import _INSPECT, ENDPOINTS
from exporter.eventstream import EVENTS
from tests.support.env import clean_env
from tests.support.paths import REPO, documentation

DEMO = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"
STACK = DEPLOY / "swarm" / "docker-stack.yml"
STANDALONE = DEPLOY / "standalone" / "docker-compose.yml"
COMPOSE_FILES = (DEMO, STANDALONE, STACK)
# The files `docker compose up` runs as they are: they start with no variable set.
NO_VARIABLE_FILES = (DEMO, STANDALONE)
SWARM_PROMETHEUS = DEPLOY / "swarm" / "prometheus.yml"
FILE_SD_PROMETHEUS = DEPLOY / "standalone" / "prometheus.yml"
TARGETS_EXAMPLE = DEPLOY / "standalone" / "targets" / "docker-hosts.yml"
ALERTS = REPO / "prometheus" / "alerts.yml"
DOCS = REPO / "README.md"  # the door; the deployment pages are under docs/ (documentation())

EXPORTER = "docker-inventory-exporter"
PORT = 9487
TEST_GID = "4242"


def _published_image() -> str:
    """The name the release workflow pushes the image under."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    image: str = workflow["env"]["IMAGE"]
    return image


PUBLISHED_IMAGE = _published_image()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _version() -> str:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


# --------------------------------------------------------------------------- compose files


def _images(path: Path) -> dict[str, str]:
    return {name: svc["image"] for name, svc in _load(path)["services"].items()}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_images_are_pinned(path: Path) -> None:
    for service, image in _images(path).items():
        if service == EXPORTER:
            # ${EXPORTER_IMAGE:-<the published name>:<version>}, the same in every file
            assert image == f"${{EXPORTER_IMAGE:-{PUBLISHED_IMAGE}:{_version()}}}", image
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{service}: {image} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{service}: {image}: pin a full version"


def _bind_sources(path: Path) -> list[str]:
    sources: list[str] = []
    data = _load(path)
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    sources.append(volume["source"])
            elif volume.split(":")[0].startswith((".", "/")):
                sources.append(volume.split(":")[0])
    for config in data.get("configs", {}).values():
        sources.append(config["file"])
    return sources


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_mounted_files_exist(path: Path) -> None:
    for source in _bind_sources(path):
        if source.startswith(("/", "$")):  # the engine socket on the host
            assert re.search(r"docker\.sock", source), source
            continue
        target = (path.parent / source).resolve()
        assert target.exists(), f"{path.name} mounts {source}, which does not exist"


def test_demo_stack_layout() -> None:
    data = _load(DEMO)
    services = data["services"]
    assert set(services) == {EXPORTER, "docker-socket-proxy", "prometheus", "grafana"}

    # the exporter: no socket, no extra group, uid 10001 from the image, locked down
    exporter = services[EXPORTER]
    assert "volumes" not in exporter and "group_add" not in exporter and "user" not in exporter
    assert exporter["command"] == ["--docker.host=tcp://docker-socket-proxy:2375"]
    assert exporter["read_only"] is True
    assert exporter["cap_drop"] == ["ALL"]
    assert exporter["build"]["context"] == "."
    # the proxy alone holds the socket, read-only, on the internal network only
    proxy = services["docker-socket-proxy"]
    socket = [v for v in proxy["volumes"] if v["target"] == "/var/run/docker.sock"]
    assert socket and socket[0]["read_only"] is True
    assert proxy["networks"] == ["docker-api"] and "ports" not in proxy
    assert data["networks"]["docker-api"] == {"internal": True}
    assert sorted(exporter["networks"]) == ["default", "docker-api"]
    for name in ("prometheus", "grafana"):
        assert "networks" not in services[name]  # default network only: no way to the proxy

    prometheus = services["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus
    grafana = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana

    # named volumes for the data, declared at the top level
    named = {
        v.split(":")[0]
        for svc in services.values()
        for v in svc.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert named == {"prometheus-data", "grafana-data"} == set(data["volumes"])
    # the demo publishes on loopback only
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


@pytest.mark.parametrize("path", NO_VARIABLE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_compose_files_build_the_image_they_name(path: Path) -> None:
    """`docker compose up` on a fresh host: the image is pulled or, failing that, built
    from this checkout (the build context is the repository root with the Dockerfile)."""
    exporter = _load(path)["services"][EXPORTER]
    context = (path.parent / exporter["build"]["context"]).resolve()
    assert context == REPO and (context / "Dockerfile").is_file()
    assert set(exporter["build"]) == {"context"}


def test_demo_prometheus_scrapes_the_exporter_service() -> None:
    """In the compose network the exporter is docker-inventory-exporter:9487: the mounted
    prometheus/prometheus.yml has to scrape that (localhost is Prometheus' own container)."""
    config = _load(REPO / "prometheus" / "prometheus.yml")
    targets = [
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert f"{EXPORTER}:{PORT}" in targets, (
        f"prometheus/prometheus.yml scrapes {targets}, not {EXPORTER}:{PORT}: the compose "
        "demo's Prometheus would not see the exporter"
    )


def test_demo_grafana_provisioning_matches_the_stack() -> None:
    """The datasource points at the compose service, the dashboards provider at the mount."""
    provisioning = REPO / "grafana" / "provisioning"
    texts = {p: p.read_text() for p in provisioning.rglob("*.y*ml")}
    datasources = [t for p, t in texts.items() if "datasources" in p.parts]
    dashboards = [t for p, t in texts.items() if "dashboards" in p.parts]
    assert any("http://prometheus:9090" in t for t in datasources), (
        "a datasource must point at http://prometheus:9090 (the compose service)"
    )
    assert any("/var/lib/grafana/dashboards" in t for t in dashboards), (
        "a dashboards provider must read /var/lib/grafana/dashboards (the compose mount)"
    )


# --------------------------------------------------------------------------- Swarm stack

# Service keys that `docker stack deploy` (compose file format 3.8) accepts and applies.
# Left out on purpose: build, cgroup_parent, container_name, depends_on, devices,
# external_links, links, network_mode, restart, security_opt, userns_mode (ignored by
# stack deploy), and group_add, which its schema rejects (docker/cli#3777).
SWARM_SERVICE_KEYS = frozenset(
    {
        "cap_add", "cap_drop", "command", "configs", "credential_spec", "deploy", "dns",
        "dns_search", "domainname", "entrypoint", "env_file", "environment", "expose",
        "extra_hosts", "healthcheck", "hostname", "image", "init", "isolation", "labels",
        "logging", "networks", "ports", "read_only", "secrets", "stop_grace_period",
        "stop_signal", "sysctls", "tmpfs", "tty", "ulimits", "user", "volumes", "working_dir",
        "stdin_open",
    }
)  # fmt: skip
SWARM_DEPLOY_KEYS = frozenset(
    {"mode", "replicas", "labels", "update_config", "rollback_config", "resources",
     "restart_policy", "placement", "endpoint_mode", "max_replicas_per_node"}
)  # fmt: skip


def test_swarm_stack_is_what_stack_deploy_accepts() -> None:
    data = _load(STACK)
    assert str(data["version"]).startswith("3."), "docker stack deploy wants a 3.x file"
    assert set(data) <= {"version", "services", "networks", "volumes", "configs", "secrets"}
    for name, service in data["services"].items():
        extra = set(service) - SWARM_SERVICE_KEYS
        assert not extra, f"{name}: {sorted(extra)} are not applied by docker stack deploy"
        deploy = service.get("deploy", {})
        assert set(deploy) <= SWARM_DEPLOY_KEYS, f"{name}: deploy has {sorted(deploy)}"
        assert deploy.get("mode", "replicated") in ("global", "replicated")
    exporter = data["services"][EXPORTER]
    assert exporter["deploy"]["mode"] == "global"
    assert re.fullmatch(r"10001:\$\{DOCKER_GID:\?[^}]+\}", exporter["user"]), exporter["user"]
    socket = [v for v in exporter["volumes"] if v["target"] == "/var/run/docker.sock"]
    assert socket and socket[0]["read_only"] is True
    assert data["networks"]["docker-inventory"]["driver"] == "overlay"

    # a docker CLI with `stack config` (20.10's has none) validates against its own schema
    for client in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if not os.access(client, os.X_OK):
            continue
        with tempfile.TemporaryDirectory() as cfg:
            proc = subprocess.run(
                [client, "stack", "config", "--compose-file", str(STACK)],
                capture_output=True,
                text=True,
                env=clean_env(
                    {
                        "DOCKER_GID": TEST_GID,
                        "DOCKER_CONFIG": cfg,
                        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
                    },
                    drop_prefixes=("EXPORTER",),
                ),
                cwd=STACK.parent,
                timeout=60,
                check=False,
            )
        if "stack config" in proc.stderr or "unknown" in proc.stderr:
            continue  # this client has no `stack config`
        assert proc.returncode == 0, f"{client} stack config: {proc.stderr}"
        rendered = yaml.safe_load(proc.stdout)
        assert rendered["services"][EXPORTER]["user"] == f"10001:{TEST_GID}"
        break


def test_swarm_prometheus_discovers_tasks() -> None:
    config = _load(SWARM_PROMETHEUS)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "docker-inventory"]
    (sd,) = job["dockerswarm_sd_configs"]
    assert sd["role"] == "tasks" and sd["port"] == PORT
    assert sd["host"] == "tcp://swarm-api-proxy:2375"
    assert "swarm-api-proxy" in _load(STACK)["services"]
    relabel = job["relabel_configs"]
    assert {
        "source_labels": ["__meta_dockerswarm_node_hostname"],
        "target_label": "instance",
    } in relabel
    assert not job.get("honor_labels", False)


# --------------------------------------------------------------------------- socket proxy

# The proxy is HAProxy with deploy/socket-proxy/haproxy.cfg (issue 20): an exact, anchored
# allowlist. tests/integration/test_socket_proxy.py runs it with the real haproxy.
PROXY_CONFIG = REPO / "deploy" / "socket-proxy" / "haproxy.cfg"


@pytest.mark.parametrize("compose_file", NO_VARIABLE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_socket_proxy_allows_exactly_what_the_exporter_reads(compose_file: Path) -> None:
    (acl,) = re.findall(r"^\s*acl exporter_path path -m reg (\S+)$", PROXY_CONFIG.read_text(), re.M)
    allowed = re.fullmatch(r"\^\(/v\[0-9\]\+\\\.\[0-9\]\+\)\?/\((.+)\)\$", acl)
    assert allowed, acl
    assert {"/" + p for p in allowed.group(1).split("|")} == {*ENDPOINTS, EVENTS, "/_ping"}

    services = _load(compose_file)["services"]
    proxy = services["docker-socket-proxy"]
    assert proxy["image"].startswith("haproxy:") and "environment" not in proxy
    (config,) = [v for v in proxy["volumes"] if v["target"] == "/usr/local/etc/haproxy/haproxy.cfg"]
    assert (compose_file.parent / config["source"]).resolve() == PROXY_CONFIG
    assert config["read_only"] is True
    (inspect,) = re.findall(
        r"^\s*acl inspect_path path -m reg (\S+)$", PROXY_CONFIG.read_text(), re.M
    )
    # the registry job's one per-object request, as the engine client allows it
    assert inspect == r"^(/v[0-9]+\.[0-9]+)?/containers/[0-9a-f]{12,64}/json$"
    assert _INSPECT.pattern == r"/containers/[0-9a-f]{12,64}/json"

    exporter = services[EXPORTER]
    assert "--docker.host=tcp://docker-socket-proxy:2375" in exporter["command"]
    assert not any("docker.sock" in str(v) for v in exporter.get("volumes", []))
    assert _load(compose_file)["networks"]["docker-api"]["internal"] is True


# --------------------------------------------------------------------------- docs


def test_docs_cover_single_host_compose_and_fleet() -> None:
    if not DOCS.exists():
        pytest.fail("README.md is missing")
    text = documentation()
    headings = re.findall(r"^#+\s+(.+)$", text, re.M)
    for wanted in ("Run in Docker", "Compose demo", "Fleet"):
        assert any(h.strip().startswith(wanted) for h in headings), f"no '{wanted}' section"
    assert "--group-add" in text and "stat -c %g /var/run/docker.sock" in text
    assert "--healthcheck" in text and "--web.config.file" in text
    assert f"`{PUBLISHED_IMAGE}`" in text  # the published name, stated
    # every image reference of the exporter in the docs is the published name and version
    for name in re.findall(r"[\w./-]*docker-inventory-exporter:[\w.]+", text):
        if name.startswith("registry.example.com/") or re.search(r":\d+$", name):
            continue  # the example of a private registry for Swarm; host:port
        assert name == f"{PUBLISHED_IMAGE}:{_version()}", name
    # the image size comes from a command the docs name, not a figure copied by hand
    assert "pytest -s tests/integration/test_container_image.py -k test_image_config" in text
    for path in ENDPOINTS:
        assert path in text, f"README.md does not list the endpoint {path}"
    assert "deploy/socket-proxy/haproxy.cfg" in text  # the exact allowlist proxy (issue 20)
    for deploy_file in (STACK, SWARM_PROMETHEUS, FILE_SD_PROMETHEUS, TARGETS_EXAMPLE,
                        STANDALONE):  # fmt: skip
        name = str(deploy_file.relative_to(REPO))
        assert name in text, f"the documentation does not mention {name}"
