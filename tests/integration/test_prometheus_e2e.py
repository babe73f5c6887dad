"""Real Prometheus scraping the real exporter on the real engine, with the real rules.

Prometheus (scrape and rule evaluation every second) scrapes an exporter that watches the
session engine with its scenario; it loads a test copy of prometheus/alerts.yml in which
every "for" is 0s and the thresholds that need days or piles of images are lowered. Then:

- what Prometheus stores: the scrape job's `job`, and the exporter's `collector` label;
- every dashboard query (Grafana variables substituted) parses and returns data;
- every rule group loads with health "ok", and the alerts the scenario makes certain fire
  with the right labels, while those it rules out stay silent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from exporter.metrics import CONTAINER_STATES
from tests.harness import scenario as sc
from tests.support.env import clean_env
from tests.support.paths import REPO
from tests.support.process import ExporterProcess
from tests.support.prometheus import Prometheus
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

# Test copy of alerts.yml: alert -> (text in its expr, replacement). Every "for" becomes 0s.
THRESHOLDS = {
    # the scenario has two untagged images, not 21
    "DockerDanglingImagesPilingUp": ("docker_images_dangling > 20", "docker_images_dangling > 0"),
    # its images were built seconds ago, not 30 days
    "DockerImageOldWithoutContainers": ("> 30 * 86400", "> 0"),
}
MUST_FIRE = (
    "DockerContainerUnhealthy",
    "DockerContainerExitedNonZero",
    "DockerContainerImageOutdated",
    "DockerDanglingImagesPilingUp",
    "DockerImageOldWithoutContainers",
)
MUST_NOT_FIRE = (
    "DockerExporterDown",
    "DockerExporterAbsent",
    "DockerEngineDown",
    "DockerInventoryStale",
    "DockerDiskUsageStale",
    "DockerImageReclaimableBytesHigh",
    "DockerImageReclaimableShareHigh",  # its 1 GiB floor: the scenario holds a few MB
    "DockerImageDiskFillingUp",
    "DockerImageUnused",
    "DockerContainerRestarting",
)
# Dashboard queries allowed to return nothing on the scenario (refId by panel title).
MAY_BE_EMPTY: set[tuple[str, str]] = set()


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
    cfg = prometheus_config(12345, "alerts-test.yml")
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == SCRAPE_JOB
    assert job["static_configs"] == [{"targets": ["127.0.0.1:12345"]}]
    assert "honor_labels" not in job
    rules = alerts_test_copy()
    assert all(rule["for"] == "0s" for group in rules["groups"] for rule in group["rules"])


def prometheus_config(exporter_port: int, rule_file: str) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    cfg["global"].update(
        {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    )
    cfg["rule_files"] = [rule_file]
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    return cfg


def alerts_test_copy() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
            if rule["alert"] in THRESHOLDS:
                old, new = THRESHOLDS[rule["alert"]]
                assert old in rule["expr"], f"{rule['alert']}: {old!r} not in its expr"
                rule["expr"] = rule["expr"].replace(old, new)
                seen.add(rule["alert"])
    assert seen == set(THRESHOLDS)
    return doc


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    prometheus: Prometheus
    exporter: ExporterProcess
    instance: str


@pytest.fixture
def stack(engine, scenario, run_exporter, run_prometheus, tmp_path) -> Stack:
    exp = run_exporter(
        "--docker.host", engine.unix_url,
        "--collect.interval", "1s",
        "--collect.timeout", "900ms",
        "--collect.disk-usage-interval", "2s",
        "--collect.container-sizes-interval", "2s",  # the container table's writable layer
        env=clean_env(),
    )  # fmt: skip
    # every job has data before Prometheus' first scrape
    exp.wait_for(
        lambda s: (
            value(s, "docker_up") == 1.0
            and value(s, "docker_images_dangling_unique_bytes") is not None
            and value(s, "docker_container_rw_size_bytes", name=sc.RUNNING) is not None
            and value(s, "docker_container_health_status", name=sc.UNHEALTHY, status="unhealthy")
            == 1.0
        )
    )

    (tmp_path / "alerts-test.yml").write_text(yaml.safe_dump(alerts_test_copy(), sort_keys=False))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(exp.port, "alerts-test.yml"), sort_keys=False)
    )
    prom = run_prometheus(tmp_path / "prometheus.yml")
    prom.wait_ready()
    # a few scrapes of every job's data (rate() and predict_linear() need two samples)
    prom.wait(
        "four scrapes with disk usage",
        lambda: prom.query('count_over_time(docker_disk_usage_bytes{resource="images"}[1m]) >= 4'),
    )
    return Stack(prom, exp, f"127.0.0.1:{exp.port}")


# --------------------------------------------------------------------------- the tests


def test_stored_labels_job_and_collector(stack):
    """The scrape job keeps `job`; the exporter's own collection jobs are in `collector`."""
    prom = stack.prometheus
    up = prom.query("up")
    assert [r["metric"] for r in up] == [
        {"__name__": "up", "job": SCRAPE_JOB, "instance": stack.instance}
    ]
    rows = prom.query("docker_exporter_collection_success")
    stored = {(r["metric"]["job"], r["metric"].get("collector")) for r in rows}
    assert not any("exported_job" in r["metric"] for r in rows)
    assert stored == {(SCRAPE_JOB, j) for j in ("inventory", "disk_usage", "container_sizes")}
    # the dashboard's variables
    jobs = prom.get("/api/v1/label/job/values", **{"match[]": "docker_up"})["data"]
    assert jobs == [SCRAPE_JOB]
    instances = prom.get(
        "/api/v1/label/instance/values", **{"match[]": substitute('docker_up{job=~"$job"}')}
    )["data"]
    assert instances == [stack.instance]


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
            assert row["metric"].get("instance", stack.instance) == stack.instance, where
    assert not empty, "queries without data:\n" + "\n".join(empty)


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
    assert labels("DockerContainerExitedNonZero") == expect(
        "DockerContainerExitedNonZero", "info", name=sc.EXITED3
    )
    assert labels("DockerContainerImageOutdated") == expect(
        "DockerContainerImageOutdated", "info", name=sc.OUTDATED
    )
    assert labels("DockerDanglingImagesPilingUp") == expect("DockerDanglingImagesPilingUp", "info")
    dangling = alerts["DockerDanglingImagesPilingUp"][0]["annotations"]["description"]
    assert f"{stack.instance} has 2 dangling images" in dangling  # two untagged builds
    old = {a["name"] for a in labels("DockerImageOldWithoutContainers")}
    assert sc.UNUSED in old and sc.BASE in old
    assert not old & {sc.HEALTH, sc.APP_TAGS[0]}  # both have containers

    for name in MUST_NOT_FIRE:
        assert name not in alerts, f"{name} fires: {labels(name)}"
    active = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["data"]["alerts"]}
    assert not active & set(MUST_NOT_FIRE), "pending or firing"

    for name, group in alerts.items():
        for alert in group:
            annotations = alert["annotations"]
            assert set(annotations) == {"summary", "description"}, name
            text = annotations["description"]
            assert "<no value>" not in text and "<error" not in text, f"{name}: {text}"
            assert stack.instance in text, f"{name}: {text}"
    exited = alerts["DockerContainerExitedNonZero"][0]["annotations"]["description"]
    assert f"Container {sc.EXITED3} on {stack.instance} exited with code 3." in exited
