"""Static checks of the Grafana dashboard and its provisioning files.

The PromQL tokenizer (tests/support/promql.py) extracts the metric names and the label
matchers of every vector selector, so a metric the exporter does not expose (a typo, a rename
in exporter/metrics.py) or a query that ignores the $job/$instance variables fails the suite.
test_rules.py uses it for the alert expressions too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.support.paths import REPO
from tests.support.promql import exporter_metric_names, metric_names, selectors, tokenize

DASHBOARD = REPO / "grafana" / "dashboards" / "docker-inventory.json"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = REPO / "grafana" / "provisioning" / "dashboards" / "docker-inventory.yml"

DS_VARIABLE_UIDS = {"${datasource}", "$datasource"}
PANEL_TYPES = {"row", "stat", "timeseries", "table", "bargauge"}
FILTER = {("job", "=~", "$job"), ("instance", "=~", "$instance")}


def test_tokenizer_finds_metrics_not_labels_functions_or_keywords():
    expr = (
        'sum by (instance, name) (rate(foo_total{job=~"$job",name="a{b}\\"c"}[$__rate_interval]'
        " offset 5m))\n/ on(instance) group_left(version) bar_info # a comment with baz_metric\n"
        '+ count_values without (x) ("exit_code", qux != 0) * 1e9 + 0x1F - Inf + 1024^3'
        ' and label_replace(quux{a="1"}, "problem", "p", "", "") > bool 3 unless absent(up)'
        " or time() - ts_seconds @ end() > 30 * 86400 or predict_linear(d[6h], 24 * 3600)"
        " or max_over_time(z[1h30m:5m])"
    )
    assert metric_names(expr) == {
        "foo_total", "bar_info", "qux", "quux", "up", "ts_seconds", "d", "z"
    }  # fmt: skip
    first = selectors(expr)[0]
    assert first.name == "foo_total"
    assert first.matchers == [("job", "=~", "$job"), ("name", "=", 'a{b}"c')]


def test_tokenizer_rejects_unknown_functions_and_nameless_selectors():
    with pytest.raises(ValueError, match="unknown PromQL function"):
        metric_names("sumx(foo)")
    with pytest.raises(ValueError, match="without a metric name"):
        metric_names('{__name__=~"docker_.*"}')
    assert metric_names('{__name__="docker_up", job="x"}') == {"docker_up"}


def test_a_renamed_metric_is_caught():
    known = exporter_metric_names()
    assert metric_names('sum(docker_images{job=~"$job"})') <= known
    assert metric_names('sum(docker_image{job=~"$job"})') - known == {"docker_image"}


# --------------------------------------------------------------------------- the dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels plus those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def targets(dash: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in all_panels(dash) for t in p.get("targets", [])]


def test_dashboard_identity(dashboard):
    assert dashboard["uid"] == "docker-inventory"
    assert dashboard["title"]
    assert dashboard.get("id") is None  # imports and provisioning assign their own
    assert dashboard["schemaVersion"] == 41  # Grafana 12
    assert "__inputs" not in dashboard  # no import-time datasource prompt: $datasource instead
    # the provisioned copy cannot be changed in the UI (a change would be lost on the next load)
    assert dashboard["editable"] is False
    assert yaml.safe_load(PROVIDERS.read_text())["providers"][0]["allowUiUpdates"] is False


def test_panel_ids_are_unique(dashboard):
    ids = [p["id"] for p in all_panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_grid_positions_do_not_overlap(dashboard):
    boxes = []
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        boxes.append((panel["title"], g["x"], g["y"], g["w"], g["h"]))
    for i, (ta, xa, ya, wa, ha) in enumerate(boxes):
        for tb, xb, yb, wb, hb in boxes[i + 1 :]:
            overlap = xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha
            assert not overlap, f"{ta!r} overlaps {tb!r}"


def test_panel_types_are_current(dashboard):
    for panel in all_panels(dashboard):
        assert panel["type"] in PANEL_TYPES, f"{panel['title']}: {panel['type']}"
        assert panel["type"] not in ("graph", "singlestat", "table-old")


def test_panels_have_descriptions_and_queries(dashboard):
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        assert panel.get("description", "").strip(), f"{panel['title']} has no description"
        assert panel.get("targets"), f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, f"{path}[{i}]")
    return out


def test_datasource_is_always_the_variable(dashboard):
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert "datasource" not in panel or panel["datasource"] is None
            continue
        assert panel["datasource"]["uid"] in DS_VARIABLE_UIDS, panel["title"]
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
    for panel, target in targets(dashboard):
        assert target["datasource"]["uid"] in DS_VARIABLE_UIDS, panel["title"]
    # anywhere in the document: every datasource reference is the variable, no fixed uid
    for path, node in _walk(dashboard):
        if path.endswith(".datasource") and node is not None:
            uid = node["uid"] if isinstance(node, dict) else node
            assert uid in DS_VARIABLE_UIDS, f"{path}: {node}"
    assert "DS_PROMETHEUS" not in DASHBOARD.read_text()


def test_template_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance"]
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    known = exporter_metric_names()
    for name in ("job", "instance"):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] in DS_VARIABLE_UIDS
        assert var["multi"] is True and var["includeAll"] is True
        assert var["allValue"] == ".+"
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert var["definition"] == query
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, query
        assert m.group(2) == name
        assert metric_names(m.group(1)) <= known, query
        # values from a series only this exporter exports
        (sel,) = selectors(m.group(1))
        assert sel.name == "docker_exporter_collection_success", query
        assert ("collector", "=", "inventory") in sel.matchers, query
    instance_query = variables["instance"]["definition"]
    assert ("job", "=~", "$job") in selectors(instance_query.split("(", 1)[1])[0].matchers


def test_every_query_is_filtered_by_job_and_instance(dashboard):
    for panel, target in targets(dashboard):
        found = selectors(target["expr"])
        assert found, f"{panel['title']}: no selector in {target['expr']!r}"
        for sel in found:
            missing = FILTER - set(sel.matchers)
            assert not missing, f"{panel['title']}: {sel.name} lacks {missing}"


def test_every_metric_is_exposed_by_the_exporter(dashboard):
    known = exporter_metric_names()
    used: set[str] = set()
    for panel, target in targets(dashboard):
        names = metric_names(target["expr"])
        assert names <= known, f"{panel['title']}: unknown {sorted(names - known)}"
        used |= names
    # the content the dashboard promises
    for required in (
        "docker_up",
        "docker_images",
        "docker_images_dangling",
        "docker_images_unused",
        "docker_disk_usage_bytes",
        "docker_disk_reclaimable_bytes",
        "docker_containers",
        "docker_image_size_bytes",
        "docker_image_unique_size_bytes",
        "docker_image_created_timestamp_seconds",
        "docker_image_last_used_timestamp_seconds",
        "docker_image_containers",
        "docker_container_state",
        "docker_container_health_status",
        "docker_container_info",
        "docker_container_image_outdated",
        "docker_container_created_timestamp_seconds",
        "docker_container_exit_code",
        "docker_exporter_collection_success",
        "docker_exporter_collection_duration_seconds",
        "docker_exporter_last_success_timestamp_seconds",
        "docker_exporter_collection_errors_total",
    ):
        assert required in used, f"no panel shows {required}"
    exprs = " ".join(t["expr"] for _, t in targets(dashboard))
    assert "predict_linear(" in exprs


def test_exporter_jobs_are_named_by_collector(dashboard):
    """The exporter's own collection jobs are in `collector`; `job` is the scrape target's."""
    for panel, target in targets(dashboard):
        expr = target["expr"]
        assert "exported_job" not in expr + target.get("legendFormat", ""), panel["title"]
        first = selectors(expr)[0].name or ""
        if not first.startswith("docker_exporter_collection_"):
            continue
        assert "collector" in expr, panel["title"]
        # one series per collection job: the legend must say which job it is
        assert "{{collector}}" in target.get("legendFormat", ""), panel["title"]


def test_rates_use_rate_interval(dashboard):
    for panel, target in targets(dashboard):
        tokens = tokenize(target["expr"])
        for i, tok in enumerate(tokens):
            if tok.kind == "ident" and tok.text in ("rate", "irate", "increase"):
                window = [t.text for t in tokens[i:] if t.text in ("[", "]") or t.kind == "var"]
                assert window[:3] == ["[", "$__rate_interval", "]"], panel["title"]


def field_unit(panel: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The unit Grafana applies to a target's values in this panel."""
    defaults = panel["fieldConfig"]["defaults"].get("unit")
    if panel["type"] != "table":
        return defaults  # type: ignore[no-any-return]
    column = "Value" if len(panel["targets"]) == 1 else f"Value #{target['refId']}"
    for tr in panel.get("transformations", []):
        if tr["id"] == "organize":
            column = tr["options"].get("renameByName", {}).get(column, column)
    for ov in panel["fieldConfig"]["overrides"]:
        if ov["matcher"] == {"id": "byName", "options": column}:
            for prop in ov["properties"]:
                if prop["id"] == "unit":
                    return prop["value"]  # type: ignore[no-any-return]
    return defaults  # type: ignore[no-any-return]


def test_units(dashboard):
    for panel, target in targets(dashboard):
        expr = target["expr"]
        first = selectors(expr)[0].name or ""
        unit = field_unit(panel, target)
        where = f"{panel['title']} {target['refId']}"
        if first.endswith("_timestamp_seconds"):
            if re.search(r"time\(\)\s*-", expr):
                assert unit == "s", where
            else:  # a point in time: Grafana wants milliseconds
                assert unit == "dateTimeFromNow", where
                assert re.search(r"\*\s*1000\s*$", expr), where
        elif first.endswith("_bytes") and "/" not in expr:
            assert unit == "bytes", where
        elif first.endswith("_seconds"):
            assert unit == "s", where


def test_tables_use_instant_table_queries(dashboard):
    for panel, target in targets(dashboard):
        if panel["type"] == "table":
            assert target.get("format") == "table" and target.get("instant") is True, panel["title"]
            excluded = set()
            for tr in panel.get("transformations", []):
                if tr["id"] == "organize":
                    excluded = {k for k, v in tr["options"]["excludeByName"].items() if v}
            assert "Time" in excluded, panel["title"]
            # merged frames keep their labels: a __name__ column would break the merge
            assert re.match(r"^\s*(max|sum|min|count|label_replace|topk)\b", target["expr"])


# --------------------------------------------------------------------------- provisioning


def test_datasource_provisioning():
    doc = yaml.safe_load(DATASOURCES.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert ds["access"] == "proxy"
    assert ds["uid"] and ds["name"]


def test_dashboard_provisioning():
    doc = yaml.safe_load(PROVIDERS.read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    # the dashboard file lives where the compose file mounts that path from
    assert DASHBOARD.parent.name == "dashboards" and DASHBOARD.parent.parent.name == "grafana"


# --------------------------------------------------------------------------- All, fleet, changes

GUARD = (
    'and on(job, instance) docker_exporter_collection_success{collector="inventory",'
    'job=~"$job",instance=~"$instance"}'
)


def test_all_never_sums_in_another_exporters_series(dashboard):
    """With All (.+), another exporter's docker_* or process_* series in another scrape job
    must not be summed in: every selector of such a metric is joined with a series only this
    exporter exports, before any aggregation."""
    queries = [t["expr"] for _, t in targets(dashboard)]
    queries += [a["expr"] for a in dashboard["annotations"]["list"]]
    for expr in queries:
        ours = [s for s in selectors(expr) if re.match(r"(docker|process)_", s.name or "")]
        guards = expr.count(GUARD)
        assert guards >= 1, expr
        if "offset" not in expr:  # an annotation's earlier sample needs no guard of its own
            assert guards == len(ours) - guards, expr


def panel(dash: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in all_panels(dash) if p["title"] == title]
    return found


def test_fleet_table_has_one_row_per_host_and_links_to_it(dashboard):
    fleet = panel(dashboard, "Fleet: which host to clean first")
    assert fleet["gridPos"]["y"] == 1 and fleet["gridPos"]["w"] == 24  # at the top
    for t in fleet["targets"]:
        assert re.match(r"^(max|sum) by \(job, instance(, version)?\) ", t["expr"]), t["expr"]
    organize = next(tr for tr in fleet["transformations"] if tr["id"] == "organize")["options"]
    columns = [
        name
        for key, name in sorted(
            ((k, organize["renameByName"].get(k, k)) for k in organize["indexByName"]),
            key=lambda kv: organize["indexByName"][kv[0]],
        )
        if not organize["excludeByName"].get(key)
    ]
    assert columns == [
        "Instance", "Image disk", "Reclaimable", "Reclaimable share", "Dangling", "Unused",
        "Exited", "Unhealthy", "Engine", "Data age", "Job",
    ]  # fmt: skip
    assert fleet["options"]["sortBy"] == [{"displayName": "Reclaimable", "desc": True}]
    units = {
        o["matcher"]["options"]: p["value"]
        for o in fleet["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "unit"
    }
    assert units == {
        "Image disk": "bytes", "Reclaimable": "bytes", "Reclaimable share": "percentunit",
        "Dangling": "none", "Unused": "none", "Exited": "none", "Unhealthy": "none",
        "Data age": "s",
    }  # fmt: skip
    (links,) = [
        p["value"]
        for o in fleet["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "Instance"
        for p in o["properties"]
        if p["id"] == "links"
    ]
    url = links[0]["url"]
    assert url.startswith(f"/d/{dashboard['uid']}/")
    assert "var-instance=${__value.raw}" in url and "var-job=${__data.fields.job}" in url


def test_changes_are_shown_and_annotated(dashboard):
    counts = panel(dashboard, "What changed: images and containers over time")
    names = {selectors(t["expr"])[0].name for t in counts["targets"]}
    assert {"docker_images", "docker_images_dangling", "docker_images_unused"} <= names
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert set(annotations) == {
        "Engine version changes",
        "Prunes: image disk use dropped",
        "OOM kills",
    }
    for a in annotations.values():
        assert a["datasource"]["uid"] in DS_VARIABLE_UIDS and a["enable"] is True
        assert metric_names(a["expr"]) <= exporter_metric_names()
    assert "docker_engine_info" in annotations["Engine version changes"]["expr"]
    assert "offset 10m" in annotations["Prunes: image disk use dropped"]["expr"]
    assert "docker_container_oom_kills_total" in annotations["OOM kills"]["expr"]
