"""The rules of grafana/dashboard-linter, ported: each test is one of its rules, named after it.

dashboard-linter is a Go program (not packaged for Debian or PyPI); these checks follow its
rules as it states them (lint/rule_*.go): the templated datasource, job and instance
variables, reload on time change, the panel datasource, title and description, units and
targets, and per target valid PromQL, $__rate_interval, job and instance matchers and
counters only under rate/irate/increase. uneditable: a provisioned dashboard is not editable.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.paths import REPO
from tests.support.promql import selectors, tokenize

DASHBOARD = REPO / "grafana" / "dashboards" / "docker-inventory.json"
DS_UIDS = {"$datasource", "${datasource}"}
# lint/rule_panel_units.go: the units the linter accepts (the ones this dashboard may use)
VALID_UNITS = frozenset(
    {
        "none", "short", "percent", "percentunit", "bytes", "decbytes", "s", "ms", "ops",
        "dateTimeFromNow", "dateTimeAsIso", "dtdurations", "bool", "string",
    }
)  # fmt: skip
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def variables(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out += [p, *p.get("panels", [])]
    return [p for p in out if p["type"] != "row"]


def test_template_datasource_rule(dash):
    (ds,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    assert ds["name"] in ("datasource", "prometheus_datasource")
    assert ds["label"] in ("Data source", "Prometheus data source")


@pytest.mark.parametrize("name", ["job", "instance"])
def test_template_job_rule_and_template_instance_rule(dash, name):
    var = variables(dash)[name]
    assert var["datasource"]["uid"] in DS_UIDS
    assert var["type"] == "query"
    assert var["label"] == name.title()
    assert var["multi"] is True
    assert var["allValue"] == ".+"


def test_template_label_promql_rule(dash):
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        func, _, rest = query.partition("(")
        assert func in ("label_names", "label_values", "metrics", "query_result"), query
        selectors(rest.rsplit(",", 1)[0])  # parses


def test_template_on_time_change_reload_rule(dash):
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["refresh"] == 2, var["name"]


def test_panel_datasource_rule(dash):
    for p in panels(dash):
        assert p["datasource"]["uid"] in DS_UIDS, p["title"]


def test_panel_title_description_rule(dash):
    for p in panels(dash):
        assert p["title"].strip() and p.get("description", "").strip(), p["title"]


def test_panel_units_rule(dash):
    """Every panel has a unit (the issue asks it of every panel, not only the linter's types)."""
    for p in panels(dash):
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        assert unit in VALID_UNITS, f"{p['title']}: {unit!r}"
        for o in p["fieldConfig"].get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in VALID_UNITS, p["title"]
    assert {p["type"] for p in panels(dash)} - UNIT_PANELS <= {"bargauge"}


def test_panel_no_targets_rule(dash):
    for p in panels(dash):
        assert p.get("targets"), p["title"]


def test_target_promql_rule(dash):
    """Tokenizes and names only known functions (the real parse runs in a real Prometheus:
    tests/integration/test_prometheus_e2e.py)."""
    for p in panels(dash):
        for t in p["targets"]:
            assert selectors(t["expr"]), t["expr"]


def test_target_rate_interval_rule(dash):
    for p in panels(dash):
        for t in p["targets"]:
            tokens = tokenize(t["expr"])
            for i, tok in enumerate(tokens):
                if tok.kind == "ident" and tok.text in ("rate", "irate", "increase"):
                    window = [x.text for x in tokens[i:] if x.text in ("[", "]") or x.kind == "var"]
                    assert window[:3] == ["[", "$__rate_interval", "]"], p["title"]


@pytest.mark.parametrize("label", ["job", "instance"])
def test_target_job_rule_and_target_instance_rule(dash, label):
    for p in panels(dash):
        for t in p["targets"]:
            for sel in selectors(t["expr"]):
                assert (label, "=~", f"${label}") in sel.matchers, f"{p['title']}: {sel.name}"


def test_target_counter_agg_rule(dash):
    """A counter (…_total) appears only as rate|irate|increase(counter{…}[…])."""
    for p in panels(dash):
        for t in p["targets"]:
            tokens = tokenize(t["expr"])
            for i, tok in enumerate(tokens):
                if tok.kind == "ident" and tok.text.endswith("_total"):
                    assert i >= 2 and tokens[i - 1].text == "(", t["expr"]
                    assert tokens[i - 2].text in ("rate", "irate", "increase"), t["expr"]
                    j = i + 1
                    if tokens[j].text == "{":
                        while tokens[j].text != "}":
                            j += 1
                        j += 1
                    assert tokens[j].text == "[", t["expr"]


def test_uneditable_rule(dash):
    assert dash["editable"] is False
