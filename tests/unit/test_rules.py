"""The alerting rules and the example Prometheus configuration.

These checks hold every alert to the conventions (monitoring-mixin style) and make sure each
one has unit tests where it fires and where it must not. promtool itself runs them in
tests/integration/test_promtool.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import REPO
from tests.support.promql import exporter_metric_names, metric_names

ALERTS = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.yml"))

SEVERITIES = {"critical", "warning", "info"}
ALERT_NAME = re.compile(r"^Docker(?:[A-Z][a-z0-9]*)+$")
DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rule_tests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, yaml.safe_load(path.read_text())) for path in RULE_TESTS]


# --------------------------------------------------------------------------- conventions


def test_groups_are_named_and_unique():
    doc = yaml.safe_load(ALERTS.read_text())
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names))
    assert all(n.startswith("docker-inventory") for n in names)


def test_every_alert_follows_the_conventions():
    rules = alert_rules()
    assert rules
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        name = rule.get("alert")
        assert name, f"not an alerting rule: {rule}"
        assert ALERT_NAME.match(name), f"{name}: not Docker-prefixed CamelCase"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: no for duration"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        description = annotations.get("description", "")
        assert "{{" in description, f"{name}: description is not templated"
        assert "Tune:" in description and name in description, (
            f"{name}: the description must say how to tune it (Tune: ... of {name} ...)"
        )


def test_alerts_read_only_exposed_metrics():
    known = exporter_metric_names() | {"up"}
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, f"{rule['alert']}: unknown {sorted(names - known)}"


def test_exporter_jobs_are_named_by_collector():
    """The exporter's own collection jobs are in `collector`; `job` is the scrape target's."""
    for rule in alert_rules():
        if "docker_exporter_" in rule["expr"]:
            assert "exported_job" not in rule["expr"], rule["alert"]
            assert not re.search(r'\bjob\s*=\s*"(inventory|disk_usage)"', rule["expr"])


def test_required_alerts_exist():
    by_expr = {r["alert"]: r["expr"] for r in alert_rules()}
    exprs = " ".join(by_expr.values())
    for needle in (
        "docker_up == 0",
        "absent(docker_up)",
        "up == 0",
        'docker_exporter_last_success_timestamp_seconds{collector="inventory"}',
        'docker_exporter_last_success_timestamp_seconds{collector="disk_usage"}',
        'docker_disk_reclaimable_bytes{resource="images"}',
        "predict_linear(",
        "docker_images_dangling",
        "docker_image_last_used_timestamp_seconds",
        "docker_image_created_timestamp_seconds",
        "docker_image_containers == 0",
        'docker_container_health_status{status="unhealthy"}',
        'docker_container_state{state="restarting"}',
        "docker_container_exit_code != 0",
        "docker_container_image_outdated == 1",
    ):
        assert needle in exprs, f"no alert uses {needle}"


# --------------------------------------------------------------------------- unit test coverage


def test_rule_tests_load_alerts_yml():
    for path, doc in rule_tests():
        files = [(path.parent / f).resolve() for f in doc["rule_files"]]
        assert files == [ALERTS], path.name


def test_every_alert_has_firing_and_silent_test_cases():
    rules = {r["alert"]: r for r in alert_rules()}
    firing: set[str] = set()
    silent: set[str] = set()
    for path, doc in rule_tests():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                assert name in rules, f"{path.name}: test of unknown alert {name}"
                expected = check.get("exp_alerts") or []
                if not expected:
                    silent.add(name)
                    continue
                firing.add(name)
                rule = rules[name]
                for alert in expected:
                    labels = alert.get("exp_labels", {})
                    assert labels.get("severity") == rule["labels"]["severity"], name
                    annotations = alert.get("exp_annotations", {})
                    assert set(annotations) == set(rule["annotations"]), (
                        f"{path.name}: {name} must check all annotations"
                    )
    assert set(rules) - firing == set(), "alerts never tested firing"
    assert set(rules) - silent == set(), "alerts never tested silent"


def test_example_scrape_config():
    doc = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "docker-inventory"
    assert not job.get("honor_labels", False), "honor_labels would replace the target's job"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    # docker-compose.yml mounts this file: scrape the exporter service by its name
    assert targets == ["docker-inventory-exporter:9487"]
    text = PROMETHEUS_CONFIG.read_text()
    assert '# - targets: ["localhost:9487"]' in text  # the same-host alternative, commented


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_test_files_parse(path):
    doc = yaml.safe_load(path.read_text())
    assert doc["tests"]
