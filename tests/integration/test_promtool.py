"""promtool (Debian's prometheus package) on what the project ships: the alert rules, the
example configuration, the rule unit tests in tests/rules/, and the exporter's exposition."""

from __future__ import annotations

import pytest
import yaml

from tests.support.paths import GOLDEN, REPO
from tests.support.prometheus import run_promtool

pytestmark = pytest.mark.integration

ALERTS = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.yml"))


def promtool_ok(*args: str, input: bytes | None = None) -> str:
    """Run promtool in the repository; it must succeed. Its stdout and stderr, joined."""
    proc = run_promtool(*args, cwd=REPO, input=input)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{out}"
    return out


def test_promtool_check_rules():
    doc = yaml.safe_load(ALERTS.read_text())
    count = sum(len(group["rules"]) for group in doc["groups"])
    out = promtool_ok("check", "rules", str(ALERTS.relative_to(REPO)))
    assert f"SUCCESS: {count} rules found" in out


def test_promtool_check_config():
    promtool_ok("check", "config", str(PROMETHEUS_CONFIG.relative_to(REPO)))


def test_promtool_rule_unit_tests():
    assert RULE_TESTS, "no tests/rules/*.yml"
    out = promtool_ok("test", "rules", *(str(p.relative_to(REPO)) for p in RULE_TESTS))
    assert "FAILED" not in out


@pytest.mark.parametrize("name", ["synthetic.prom"])
def test_promtool_finds_nothing_to_complain_about_in_the_golden_exposition(name: str):
    """The golden file is the exporter's whole output for every job (tests/unit/test_golden.py)."""
    assert promtool_ok("check", "metrics", input=(GOLDEN / name).read_bytes()) == ""
