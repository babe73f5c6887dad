"""Real Prometheus scraping the real exporter on the real engine, with the real rules.

Prometheus (scrape and rule evaluation every second) scrapes an exporter that watches the
session engine with its scenario, and a real node_exporter on the same host (127.0.0.1). It
loads a test copy of prometheus/alerts.yml in which every "for" is 0s and the windows that
need days are seconds; the exporter lowers two thresholds with its own --alert.* flags. Then:

- what Prometheus stores: the scrape job's `job`, and the exporter's `collector` label;
- the capacity join finds node_exporter's filesystem of the engine's data root;
- every dashboard query (Grafana variables substituted) parses and returns data;
- every rule group loads with health "ok", and the alerts the scenario makes certain fire
  with the right labels, while those it rules out stay silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from exporter.metrics import CONTAINER_STATES
from tests.harness import scenario as sc
from tests.harness.dockerd import dockerd_available, start_engine
from tests.support.env import clean_env, need
from tests.support.paths import REPO
from tests.support.process import ExporterProcess, free_port
from tests.support.prometheus import NodeExporter, Prometheus
from tests.support.promql import value

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "grafana" / "dashboards" / "docker-inventory.json"
ALERTS = REPO / "prometheus" / "alerts.yml"
EXAMPLE_CONFIG = REPO / "prometheus" / "prometheus.yml"
SCRAPE_JOB = "docker-inventory"

# Grafana's variables as the dashboard sees them with "All" selected.
GRAFANA_VARIABLES = {
    "job": ".+",
    "instance": ".+",
    "datasource": "prometheus",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# Test copy of alerts.yml: rule -> (text in its expr, replacement). Every "for" becomes 0s.
WINDOWS = {
    # the scenario's images arrived seconds ago, not 30 days: count from 5s, unused since 2s
    "docker:image_unused_on_host_30d": (
        ("offset 30d", "offset 5s"),
        ("offset 1d", "offset 2s"),
    ),
}
# Thresholds lowered through the exporter's own flags (docker_exporter_alert_threshold).
THRESHOLD_FLAGS = (
    "--alert.dangling-images=0",  # the scenario has two untagged images, not 21
    "--alert.image-disk-share=0.000001",  # a few MB of images on a big disk
    "--alert.container-restarts=2",  # inv-looping restarts 3 times while watched, inv-oom once
)
MUST_FIRE = (
    "DockerContainerUnhealthy",
    "DockerContainerExitedNonZero",  # created seconds ago, exited 3
    "DockerContainerImageOutdated",
    "DockerDanglingImagesPilingUp",
    "DockerImagesUnused",
    "DockerImageDiskUsageHigh",
    "DockerContainerCrashLooping",  # inv-looping, started again while watched
    "DockerContainerOOMKilled",  # inv-oom, started again while watched
    "DockerContainerDyingNonZero",  # inv-looping: 3 starts, last exit 2
)
MUST_NOT_FIRE = (
    "DockerExporterDown",
    "DockerExporterAbsent",
    "DockerEngineDown",
    "DockerInventoryStale",
    "DockerDiskUsageStale",
    "DockerImageDiskReclaimable",  # a few MB of a big disk
    "DockerImageDiskFillingUp",  # no growth
    "DockerImagesHeldByStoppedContainers",  # its containers were created seconds ago
    "DockerContainerRestarting",
    "DockerDanglingVolumesLarge",  # 20 KB
    "DockerBuildCacheIdle",  # built seconds ago
    "DockerSwarmServiceDegraded",  # the session engine is not in a swarm
)
# Dashboard queries allowed to return nothing on the scenario (refId by panel title).
# The Swarm row and the project volumes need a Swarm manager and labelled volumes, which the
# session engine has not: test_swarm_and_project_panels_return_data runs them on one that has.
MAY_BE_EMPTY: set[tuple[str, str]] = {
    ("Project bytes", "A"),
    ("Swarm services: running and desired tasks", "A"),
    ("Swarm services: running and desired tasks", "B"),
    ("Swarm tasks not running", "A"),
    # needs the opt-in registry job and a registry that moved a tag: the registry job's own
    # metrics are proven on a real registry in test_registry_integration.py
    ("Containers to pull or recreate", "A"),
}
# The panels of the volumes, build cache, projects and Swarm rows
SWARM_AND_PROJECT_PANELS = range(140, 170)


def substitute(expr: str) -> str:
    """Replace Grafana's $var / ${var} / ${var:format} as Grafana would with All selected."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)
    assert "$" not in out and "[[" not in out, out
    return out


def test_substitute():
    assert substitute('rate(x{job=~"$job"}[$__rate_interval])') == 'rate(x{job=~".+"}[1m])'
    assert substitute("y[${__range}]") == "y[1h]"


def test_config_copy():
    """The test configuration is the example one, faster, pointed at the test exporter."""
    cfg = prometheus_config(12345, 9100, "alerts-test.yml")
    job, node = cfg["scrape_configs"]
    assert job["job_name"] == SCRAPE_JOB
    assert job["static_configs"] == [{"targets": ["127.0.0.1:12345"]}]
    assert "honor_labels" not in job
    assert node == {"job_name": "node", "static_configs": [{"targets": ["127.0.0.1:9100"]}]}
    rules = alerts_test_copy()
    assert all(
        rule["for"] == "0s"
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    )


def prometheus_config(exporter_port: int, node_port: int, rule_file: str) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    cfg["global"].update(
        {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    )
    cfg["rule_files"] = [rule_file]
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    # node_exporter on the same host: the capacity rules join on instance without its port
    cfg["scrape_configs"].append(
        {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]}
    )
    return cfg


def alerts_test_copy() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
            name = rule.get("alert") or rule["record"]
            for old, new in WINDOWS.get(name, ()):
                assert old in rule["expr"], f"{name}: {old!r} not in its expr"
                rule["expr"] = rule["expr"].replace(old, new)
                seen.add(name)
    assert seen == set(WINDOWS)
    return doc


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    prometheus: Prometheus
    exporter: ExporterProcess
    instance: str
    node: NodeExporter
    data_root: str
    engine_version: str
    storage_driver: str  # `docker info`'s: overlayfs on the containerd image store


@pytest.fixture(scope="module")
def stack(engine, scenario, tmp_path_factory) -> Iterator[Stack]:
    """One stack per engine version for the whole module: the tests only read from it."""
    tmp = tmp_path_factory.mktemp("stack")
    with contextlib.ExitStack() as cleanup:
        node = NodeExporter(tmp / "node")
        cleanup.callback(node.stop)
        node.wait_ready()
        exp = ExporterProcess(
            [
                "--docker.host", engine.unix_url,
                "--collect.interval", "1s",
                "--collect.timeout", "900ms",
                "--collect.disk-usage-interval", "2s",
                "--collect.container-sizes-interval", "2s",  # the container table's rw layer
                *THRESHOLD_FLAGS,
            ],
            tmp / "exporter.log",
            env=clean_env(),
        )  # fmt: skip
        cleanup.callback(exp.stop)
        exp.wait_ready()
        # every job has data before Prometheus' first scrape
        exp.wait_for(
            lambda s: (
                value(s, "docker_up") == 1.0
                and value(s, "docker_images_dangling_unique_bytes") is not None
                and value(s, "docker_container_rw_size_bytes", name=sc.RUNNING) is not None
                and value(
                    s, "docker_container_health_status", name=sc.UNHEALTHY, status="unhealthy"
                )
                == 1.0
            )
        )

        (tmp / "alerts-test.yml").write_text(yaml.safe_dump(alerts_test_copy(), sort_keys=False))
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(
                prometheus_config(exp.port, node.port, "alerts-test.yml"), sort_keys=False
            )
        )
        prom = Prometheus(tmp / "prometheus.yml", tmp / "prometheus")
        cleanup.callback(prom.stop)
        prom.wait_ready()
        # a few scrapes of every job's data (rate() and predict_linear() need two samples)
        prom.wait(
            "four scrapes with disk usage",
            lambda: prom.query(
                'count_over_time(docker_disk_usage_bytes{resource="images"}[1m]) >= 4'
            ),
        )
        # the event counters rise only while the stream watches and Prometheus scrapes (an
        # increase needs a sample before it): the scenario's restart loop and OOM kill once
        # more (docker start of an exited container counts as a restart)
        engine.cli("start", sc.LOOPING)
        engine.cli("start", sc.OOM)
        exp.wait_for(
            lambda s: (
                value(s, "docker_container_restarts_total", name=sc.LOOPING) == 3.0
                and value(s, "docker_container_oom_kills_total", name=sc.OOM) == 1.0
            ),
            timeout=60,
        )
        time.sleep(2)  # scraped after the rise
        data_root, driver = engine.cli(
            "info", "--format", "{{.DockerRootDir}} {{.Driver}}"
        ).stdout.split()
        version = engine.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
        yield Stack(prom, exp, f"127.0.0.1:{exp.port}", node, data_root, version, driver)


# --------------------------------------------------------------------------- the tests


def test_stored_labels_job_and_collector(stack):
    """The scrape job keeps `job`; the exporter's own collection jobs are in `collector`."""
    prom = stack.prometheus
    up = prom.query(f'up{{job="{SCRAPE_JOB}"}}')
    assert [r["metric"] for r in up] == [
        {"__name__": "up", "job": SCRAPE_JOB, "instance": stack.instance}
    ]
    rows = prom.query("docker_exporter_collection_success")
    stored = {(r["metric"]["job"], r["metric"].get("collector")) for r in rows}
    assert not any("exported_job" in r["metric"] for r in rows)
    assert stored == {
        (SCRAPE_JOB, j) for j in ("inventory", "disk_usage", "container_sizes", "swarm")
    }
    # the dashboard's variables: only this exporter's targets, not node_exporter's
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}

    def values(name: str) -> list[str]:
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", variables[name]["definition"])
        assert m, variables[name]["definition"]
        answer = prom.get(
            f"/api/v1/label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))}
        )
        data: list[str] = answer["data"]
        return data

    assert values("job") == [SCRAPE_JOB]
    assert values("instance") == [stack.instance]
    assert len(prom.query('up{job="node"} == 1')) == 1  # another exporter is scraped too


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            out += [(p["title"], t) for t in p.get("targets", [])]
    return out


def test_every_dashboard_query_parses_and_returns_data(stack):
    prom = stack.prometheus
    now = time.time()
    empty = []
    for title, target in dashboard_targets():
        expr = substitute(target["expr"])
        where = f"{title} ({target['refId']}): {expr}"
        if target.get("range", not target.get("instant", False)):
            answer = prom.get(
                "/api/v1/query_range", query=expr, start=str(now - 20), end=str(now), step="1"
            )
            assert answer["status"] == "success", f"{where}: {answer}"
        result = prom.query(expr)
        if not result and (title, target["refId"]) not in MAY_BE_EMPTY:
            empty.append(where)
        for row in result:
            # with All, node_exporter's process_* series (another job) are never summed in
            assert row["metric"].get("instance", stack.instance) == stack.instance, where
    assert not empty, "queries without data:\n" + "\n".join(empty)
    # the annotations' queries parse (prunes and upgrades do not happen here)
    for annotation in json.loads(DASHBOARD.read_text())["annotations"]["list"]:
        answer = prom.get(
            "/api/v1/query_range",
            query=substitute(annotation["expr"]),
            start=str(now - 60),
            end=str(now),
            step="5",
        )
        assert answer["status"] == "success", f"{annotation['name']}: {answer}"


def test_fleet_table_says_which_host_to_clean(stack):
    """The fleet table's figures for the test host are the exporter's own."""
    prom = stack.prometheus
    samples = stack.exporter.samples()
    fleet = {
        t["refId"]: t
        for t in dict(dashboard_targets_by_panel())["Fleet: which host to clean first"]
    }

    def one(ref: str) -> dict[str, Any]:
        row: dict[str, Any]
        (row,) = prom.query(substitute(fleet[ref]["expr"]))
        assert row["metric"]["instance"] == stack.instance and row["metric"]["job"] == SCRAPE_JOB
        return row

    expected = {
        "A": value(samples, "docker_disk_usage_bytes", resource="images"),
        "B": value(samples, "docker_disk_reclaimable_bytes", resource="images"),
        "D": value(samples, "docker_images_dangling"),
        "E": value(samples, "docker_images_unused"),
        "F": value(samples, "docker_containers", state="exited"),
        "G": 1.0,  # inv-unhealthy
    }
    for ref, want in expected.items():
        assert float(one(ref)["value"][1]) == want, ref
    version = one("H")["metric"]["version"]
    assert version == stack.engine_version
    assert 0 <= float(one("I")["value"][1]) < 60


def _by(rows: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in rows}


def test_dashboard_figures_match_the_scenario(stack):
    prom = stack.prometheus
    f = 'job=~".+",instance=~".+"'
    states = _by(prom.query(f"sum by (state) (docker_containers{{{f}}})"), "state")
    assert set(states) == set(CONTAINER_STATES)
    for state in ("running", "paused", "exited", "created"):
        expected = sum(1 for s in sc.EXPECTED_STATE.values() if s == state)
        assert states[state] >= expected, states
    assert float(prom.query(f"sum(docker_images{{{f}}})")[0]["value"][1]) >= 8
    assert float(prom.query(f"docker_up{{{f}}}")[0]["value"][1]) == 1.0

    panels = dict(dashboard_targets_by_panel())
    problems = prom.query(substitute(panels["Problem containers"][0]["expr"]))
    found = {
        (r["metric"]["name"], r["metric"]["problem"], r["metric"].get("exit_code"))
        for r in problems
    }
    assert (sc.UNHEALTHY, "unhealthy", None) in found
    assert (sc.EXITED3, "exited non-zero", "3") in found
    assert not any(name in (sc.EXITED0, sc.RUNNING, sc.HEALTHY) for name, _, _ in found)

    table = {t["refId"]: t for t in panels["All containers"]}
    health = _by(prom.query(substitute(table["C"]["expr"])), "name")
    assert health[sc.HEALTHY] == 1 and health[sc.UNHEALTHY] == 3
    outdated = _by(prom.query(substitute(table["D"]["expr"])), "name")
    assert outdated[sc.OUTDATED] == 1 and outdated[sc.RUNNING] == 0
    rw = _by(prom.query(substitute(table["G"]["expr"])), "name")
    assert rw[sc.RUNNING] >= sc.RUNNING_RW_BYTES
    exit_codes = _by(prom.query(substitute(table["F"]["expr"])), "name")
    assert exit_codes[sc.EXITED3] == 3 and exit_codes[sc.EXITED0] == 0
    created_ms = _by(prom.query(substitute(table["E"]["expr"])), "name")
    now_ms = time.time() * 1000
    assert set(created_ms) >= set(sc.EXPECTED_STATE)
    assert all(0 < now_ms - ms < 24 * 3600 * 1000 for ms in created_ms.values()), created_ms

    unused = prom.query(substitute(panels["Dangling and unused images"][3]["expr"]))
    names = {r["metric"]["name"] for r in unused}
    assert sc.UNUSED in names and "<none>:<none>" in names
    assert not names & {sc.APP_TAGS[0], sc.HEALTH}  # used, tagged
    # the untagged image inv-outdated still runs is listed, with its container
    assert any(r["metric"]["name"] == "<none>:<none>" and r["value"][1] == "1" for r in unused)


def dashboard_targets_by_panel() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            if p.get("targets"):
                yield p["title"], p["targets"]


def test_rules_load_and_the_certain_alerts_fire(stack):
    prom = stack.prometheus
    expected_groups = [g["name"] for g in yaml.safe_load(ALERTS.read_text())["groups"]]

    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = prom.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] != "unknown" for r in rules):
            return groups
        return None

    groups = prom.wait("every rule evaluated", evaluated, timeout=60)
    assert sorted(g["name"] for g in groups) == sorted(expected_groups)
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"

    def firing() -> dict[str, list[dict[str, Any]]] | None:
        alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
        by_name: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            if alert["state"] == "firing":
                by_name.setdefault(alert["labels"]["alertname"], []).append(alert)
        return by_name if all(name in by_name for name in MUST_FIRE) else None

    alerts = prom.wait(f"alerts {MUST_FIRE} firing", firing, timeout=60)
    time.sleep(3)  # a few more evaluations: nothing else may join
    alerts = firing() or alerts
    base = {"job": SCRAPE_JOB, "instance": stack.instance}

    def labels(name: str) -> list[dict[str, str]]:
        return [a["labels"] for a in alerts.get(name, [])]

    def expect(alertname: str, severity: str, /, **extra: str) -> list[dict[str, str]]:
        return [{"alertname": alertname, "severity": severity, **base, **extra}]

    assert labels("DockerContainerUnhealthy") == expect(
        "DockerContainerUnhealthy", "warning", name=sc.UNHEALTHY, status="unhealthy"
    )
    assert sorted(labels("DockerContainerExitedNonZero"), key=lambda x: x["name"]) == [
        *expect("DockerContainerExitedNonZero", "warning", name=sc.EXITED3),
        *expect("DockerContainerExitedNonZero", "warning", name=sc.LOOPING),
        *expect("DockerContainerExitedNonZero", "warning", name=sc.OOM),
    ]
    assert labels("DockerContainerCrashLooping") == expect(
        "DockerContainerCrashLooping", "warning", name=sc.LOOPING
    )
    assert labels("DockerContainerOOMKilled") == expect(
        "DockerContainerOOMKilled", "warning", name=sc.OOM
    )
    assert labels("DockerContainerDyingNonZero") == expect(
        "DockerContainerDyingNonZero", "warning", name=sc.LOOPING
    )
    assert labels("DockerContainerImageOutdated") == expect(
        "DockerContainerImageOutdated", "info", name=sc.OUTDATED
    )
    assert labels("DockerDanglingImagesPilingUp") == expect("DockerDanglingImagesPilingUp", "info")
    dangling = alerts["DockerDanglingImagesPilingUp"][0]["annotations"]["description"]
    assert f"{stack.instance} has 2 dangling images" in dangling  # two untagged builds
    # one alert for the host, however many images: as many as the exporter counts unused
    assert labels("DockerImagesUnused") == expect("DockerImagesUnused", "info")
    unused = value(stack.exporter.samples(), "docker_images_unused")
    assert unused is not None and unused >= 4  # inv-unused, inv-moving, the untagged build, base
    description = alerts["DockerImagesUnused"][0]["annotations"]["description"]
    assert description.startswith(f"{unused:g} images on {stack.instance} have been on the host")
    assert "Removing them frees at least " in description and "unknown amount" not in description
    # the disk alert on node_exporter's filesystem, with the threshold the exporter lowered
    assert labels("DockerImageDiskUsageHigh") == expect(
        "DockerImageDiskUsageHigh", "warning", source="node_exporter"
    )
    share = alerts["DockerImageDiskUsageHigh"][0]["annotations"]["description"]
    assert "the filesystem holding the engine's data root (its size from node_exporter)" in share
    assert "above this host's threshold of 0.0001%" in share

    for name in MUST_NOT_FIRE:
        assert name not in alerts, f"{name} fires: {labels(name)}"
    active = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["data"]["alerts"]}
    assert not active & set(MUST_NOT_FIRE), "pending or firing"

    for name, group in alerts.items():
        for alert in group:
            annotations = alert["annotations"]
            assert set(annotations) == {"summary", "description", "runbook_url"}, name
            assert annotations["runbook_url"].endswith(f"docs/runbook.md#{name.lower()}")
            text = annotations["description"]
            assert "<no value>" not in text and "<error" not in text, f"{name}: {text}"
            assert stack.instance in text, f"{name}: {text}"
    exited = [a["annotations"]["description"] for a in alerts["DockerContainerExitedNonZero"]]
    assert any(f"Container {sc.EXITED3} on {stack.instance} exited with code 3 within" in d
               for d in exited)  # fmt: skip
    oom = alerts["DockerContainerOOMKilled"][0]["annotations"]["description"]
    assert f"Container {sc.OOM} on {stack.instance} was OOM-killed (" in oom


def _mount_point(path: str) -> str:
    """The deepest mount point at or above ``path`` (/proc/self/mounts): where the filesystem
    holding it is mounted. dockerd may bind-mount its data root onto itself."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return max((p for p in points if path == p or path.startswith(p.rstrip("/") + "/")), key=len)


def test_capacity_join_finds_node_exporters_filesystem_of_the_data_root(stack):
    """docker_engine_storage_info (from /info) joined with a real node_exporter's filesystems:
    the deepest mount point above the engine's data root, and its size and free space."""
    prom = stack.prometheus
    mountpoint = _mount_point(stack.data_root)
    host = "127.0.0.1"

    (row,) = prom.wait(
        "the data root's mount point", lambda: prom.query("docker:data_root_mountpoint")
    )
    assert row["metric"] == {
        "__name__": "docker:data_root_mountpoint",
        "job": SCRAPE_JOB,
        "instance": stack.instance,
        "host": host,
        "data_root": stack.data_root,
        "storage_driver": stack.storage_driver,
        "mountpoint": mountpoint,
    }
    node_size = prom.query(f'node_filesystem_size_bytes{{job="node", mountpoint="{mountpoint}"}}')[
        0
    ]["value"][1]
    capacity = prom.wait("capacity", lambda: prom.query("docker:image_disk_capacity_bytes"))
    assert [(r["metric"], r["value"][1]) for r in capacity] == [
        (
            {
                "__name__": "docker:image_disk_capacity_bytes",
                "job": SCRAPE_JOB,
                "instance": stack.instance,
                "source": "node_exporter",
            },
            node_size,
        )
    ]
    fs = os.statvfs(stack.data_root)
    assert float(node_size) == fs.f_blocks * fs.f_frsize
    # the exporter measured the same filesystem itself (a local unix socket): the fallback
    own = value(stack.exporter.samples(), "docker_data_root_filesystem_size_bytes")
    assert own == float(node_size)


# --------------------------------------------------------------------------- Swarm and projects


def test_swarm_and_project_panels_return_data(engine_build, tmp_path):
    """A private engine in a one-node swarm: a stack-labelled replicated service of 2, a global
    service, a service that cannot be placed, and a project's volume. Every query of the
    volumes, build cache, projects and Swarm rows returns data, and DockerSwarmServiceDegraded
    fires for the service that cannot be placed, and for it only."""
    need(dockerd_available(engine_build))
    with contextlib.ExitStack() as cleanup:
        offline = {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}  # tasks use local images only
        engine = start_engine(daemon_env=offline, build=engine_build)
        cleanup.callback(engine.close)
        ctx = sc.write_context(engine.root / "b" / "base", sc._BASE_DOCKERFILE, with_busybox=True)
        sc.build(engine, ctx, (sc.BASE,))
        engine.cli("volume", "create", "--label", "com.docker.compose.project=shop", "shop_db")
        engine.cli("run", "--rm", "-v", "shop_db:/d", sc.BASE, "sh", "-c",
                   "head -c 4096 /dev/zero > /d/f")  # fmt: skip
        engine.cli("swarm", "init", "--advertise-addr", "127.0.0.1",
                   "--listen-addr", f"127.0.0.1:{free_port()}")  # fmt: skip
        create = ("service", "create", "--detach", "--no-resolve-image", "--init")
        sleep = (sc.BASE, "sleep", "100000")
        stack_label = ("--container-label", "com.docker.stack.namespace=shop")
        engine.cli(*create, "--name", "shop_web", "--replicas", "2", *stack_label, *sleep)
        engine.cli(*create, "--name", "agent", "--mode", "global", *sleep)
        engine.cli(*create, "--name", "stuck", "--constraint", "node.labels.nowhere==1", *sleep)

        exp = ExporterProcess(
            [
                "--docker.host", engine.unix_url,
                "--collect.interval", "1s",
                "--collect.swarm-interval", "1s",
                "--collect.disk-usage-interval", "2s",
                "--collect.container-sizes-interval", "2s",
            ],
            tmp_path / "exporter.log",
            env=clean_env(),
        )  # fmt: skip
        cleanup.callback(exp.stop)
        exp.wait_ready()
        exp.wait_for(
            lambda s: (
                value(s, "docker_project_containers", project="shop", state="running") == 2
                and value(s, "docker_swarm_service_tasks", service="agent", state="running") == 1
                and value(s, "docker_project_rw_bytes", project="shop") is not None
                and value(s, "docker_project_volume_bytes", project="shop") == 4096
            ),
            timeout=90,
        )
        (tmp_path / "alerts-test.yml").write_text(
            yaml.safe_dump(alerts_test_copy(), sort_keys=False)
        )
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(exp.port, free_port(), "alerts-test.yml"))
        )
        prom = Prometheus(tmp_path / "prometheus.yml", tmp_path / "prometheus")
        cleanup.callback(prom.stop)
        prom.wait_ready()
        prom.wait(
            "three scrapes of the swarm job",
            lambda: prom.query("count_over_time(docker_swarm_service_tasks[1m]) >= 3"),
        )
        dash = json.loads(DASHBOARD.read_text())
        mine = [p for p in dash["panels"] if p["id"] in SWARM_AND_PROJECT_PANELS]
        targets = [(p["title"], t) for p in mine for t in p.get("targets", [])]
        assert len(targets) == 11, [title for title, _ in targets]
        empty = [
            f"{title} ({t['refId']})"
            for title, t in targets
            if not prom.query(substitute(t["expr"]))
        ]
        assert not empty, f"queries without data: {empty}"
        running = prom.query(substitute(targets[-2][1]["expr"]))  # running tasks by service
        assert {r["metric"]["service"]: r["value"][1] for r in running} == {
            "shop_web": "2", "agent": "1", "stuck": "0",
        }  # fmt: skip

        def degraded() -> list[dict[str, Any]] | None:
            alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
            found = [
                a for a in alerts
                if a["labels"]["alertname"] == "DockerSwarmServiceDegraded"
                and a["state"] == "firing"
            ]  # fmt: skip
            return found or None

        (alert,) = prom.wait("DockerSwarmServiceDegraded firing", degraded, timeout=60)
        instance = f"127.0.0.1:{exp.port}"
        assert alert["labels"] == {
            "alertname": "DockerSwarmServiceDegraded", "severity": "warning",
            "job": SCRAPE_JOB, "instance": instance,
            "service": "stuck", "mode": "replicated", "state": "running",
        }  # fmt: skip
        assert alert["annotations"]["description"].startswith(
            f"Swarm service stuck (replicated) runs 0 tasks, fewer than the 1 it should, for"
            f" 10 minutes (as seen by the manager {instance})."
        )
