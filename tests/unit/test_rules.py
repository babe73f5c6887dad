"""The alerting rules and the example Prometheus configuration.

These checks hold every alert to the conventions (monitoring-mixin style) and make sure each
one has unit tests where it fires and where it must not. promtool itself runs them in
tests/integration/test_promtool.py.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.thresholds import THRESHOLDS
from tests.support.paths import REPO, documentation
from tests.support.promql import exporter_metric_names, metric_names

ALERTS = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
README = REPO / "README.md"  # and docs/: documentation()
RUNBOOK_URL = (
    "https://github.com/docker-inventory-exporter/docker-inventory-exporter/blob/main/"
    "docs/runbook.md#"
)
# node_exporter's filesystem metrics, which the capacity rules join
NODE_METRICS = frozenset({"node_filesystem_size_bytes", "node_filesystem_avail_bytes"})

SEVERITIES = {"critical", "warning", "info"}
ALERT_NAME = re.compile(r"^Docker(?:[A-Z][a-z0-9]*)+$")
DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")


def all_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "record" in rule]


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
        name = rule["alert"]
        assert ALERT_NAME.match(name), f"{name}: not Docker-prefixed CamelCase"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: no for duration"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        description = annotations.get("description", "")
        assert "{{" in description, f"{name}: description is not templated"
        assert "Tune:" in description, f"{name}: the description must say how to tune it"
        assert annotations.get("runbook_url") == RUNBOOK_URL + name.lower(), name
        assert set(annotations) == {"summary", "description", "runbook_url"}, name


def test_recording_rules_are_named_and_used():
    used = " ".join(r["expr"] + str(r.get("annotations", {})) for r in all_rules())
    for rule in recording_rules():
        name = rule["record"]
        assert re.fullmatch(r"docker:[a-z0-9_]+", name), name
        assert used.count(name) >= 1 + (name in rule["expr"]), f"{name} is not used"


def _number(expr: str) -> float:
    """A constant PromQL arithmetic expression (+, -, *, /, ^) as a float."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}  # fmt: skip

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return float(ops[type(node.op)](ev(node.left), ev(node.right)))
        raise ValueError(f"not a constant: {expr}")

    return ev(ast.parse(expr.replace("^", "**"), mode="eval").body)


def test_threshold_defaults_match_the_exporter():
    """docker:alert_threshold holds the defaults the exporter's --help names, and only those."""
    (rule,) = [r for r in recording_rules() if r["record"] == "docker:alert_threshold"]
    assert rule["expr"].lstrip().startswith("docker_exporter_alert_threshold\n")
    defaults = {
        name: _number(value)
        for value, name in re.findall(
            r'label_replace\(\s*docker_up \* 0 \+ ([^,]+),\s*"threshold",\s*"(\w+)"',
            rule["expr"],
        )
    }
    assert defaults == {t.name: t.default for t in THRESHOLDS}
    assert rule["expr"].count("or on(job, instance, threshold)") == len(THRESHOLDS)
    # every threshold is compared against somewhere
    exprs = " ".join(r["expr"] for r in all_rules())
    for t in THRESHOLDS:
        assert f'docker:alert_threshold{{threshold="{t.name}"}}' in exprs, t.name
        assert t.flag in documentation(), t.flag


def test_disk_alerts_name_their_capacity_source():
    """Where no capacity is known the description says the figure is against a budget."""
    for rule in alert_rules():
        if "docker:image_disk_capacity_bytes" in rule["expr"] or "headroom" in rule["expr"]:
            assert '{{ if eq $labels.source "budget"' in rule["annotations"]["description"]
            assert "no capacity is known" in rule["annotations"]["description"]


def test_rules_read_only_exposed_metrics():
    recorded = {r["record"] for r in recording_rules()}
    known = exporter_metric_names() | {"up"} | NODE_METRICS | recorded
    for rule in all_rules():
        name = rule.get("alert") or rule["record"]
        names = metric_names(rule["expr"])
        assert names, name
        assert names <= known, f"{name}: unknown {sorted(names - known)}"
    # node_exporter is read only by the capacity join, and only through the host key
    for rule in all_rules():
        if set(metric_names(rule["expr"])) & NODE_METRICS:
            assert rule.get("record", "").startswith("docker:data_root_"), rule
            assert '"host", "$1", "instance", "(.+?)(?::[0-9]+)?"' in rule["expr"]


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
        "docker:image_disk_reclaimable_bytes",
        "docker:image_disk_capacity_bytes",
        "predict_linear(",
        "docker_images_dangling",
        "count by (job, instance) (docker:image_unused_on_host_30d)",
        "count by (job, instance) (docker:image_only_stopped_containers_30d)",
        'docker_container_health_status{status="unhealthy"}',
        'docker_container_state{state="restarting"}',
        "docker_container_exit_code != 0",
        "docker_container_image_outdated == 1",
    ):
        assert needle in exprs, f"no alert uses {needle}"
    records = " ".join(r["expr"] for r in recording_rules())
    for needle in (
        "docker_image_containers offset 30d",  # age on the host, not since the build
        "node_filesystem_size_bytes",
        "docker_data_root_filesystem_size_bytes",
        "docker_engine_storage_info",
    ):
        assert needle in records, f"no recording rule uses {needle}"


# --------------------------------------------------------------------------- runbook and README


def runbook_sections() -> dict[str, str]:
    text = RUNBOOK.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p.split("\n", 1)[1] for p in parts}


def test_runbook_has_one_section_per_alert_and_no_orphans():
    sections = runbook_sections()
    alerts = [r["alert"] for r in alert_rules()]
    assert sorted(sections) == sorted(alerts)
    for name, body in sections.items():
        for part in ("**Meaning.**", "**Confirm.**", "**Fix.**"):
            assert part in body, f"runbook {name}: no {part}"
        blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.S)
        assert any(re.search(r"\bdocker ", b) for b in blocks), f"runbook {name}: no docker command"


def readme_alert_rows() -> dict[str, list[str]]:
    rows = {}
    for line in documentation().splitlines():
        m = re.match(r"\| \[`(Docker\w+)`\]\(", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


def test_readme_alert_table_matches_the_rules():
    rows = readme_alert_rows()
    rules = {r["alert"]: r for r in alert_rules()}
    assert sorted(rows) == sorted(rules), "the alert table (docs/alerts.md) and alerts.yml differ"
    for name, cells in rows.items():
        assert cells[1] == rules[name]["labels"]["severity"], name
        assert cells[2] == rules[name]["for"], name
        assert f"(runbook.md#{name.lower()})" in cells[0], name  # from docs/alerts.md


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
