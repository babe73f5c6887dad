"""The suite's own rules: every test sits in a tier, and shares code only through tests/support."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.env import ON_CI
from tests.support.paths import TESTS

TIERS = ("unit", "integration")
MODULES = sorted(p for tier in TIERS for p in (TESTS / tier).glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_test_module_is_in_a_tier():
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []
    assert [p for p in MODULES if p.name.startswith("test_")], "no tests found"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shared_code_comes_from_support_only(path: Path):
    allowed = ("tests.support", "tests.harness")
    tests_imports = {m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")}
    wrong = sorted(m for m in tests_imports if not m.startswith(allowed))
    assert wrong == [], f"{path.name} imports {wrong}: move shared code to tests/support/"


@pytest.mark.parametrize("path", sorted((TESTS / "unit").glob("*.py")), ids=lambda p: p.name)
def test_the_fast_tier_never_starts_an_engine(path: Path):
    harness = sorted(m for m in imported_modules(path) if m.startswith("tests.harness"))
    assert harness == [], f"{path.name} imports {harness}: it belongs in tests/integration/"


def test_hypothesis_is_derandomized_exactly_on_ci():
    current = settings.default
    assert current is not None and current.derandomize is ON_CI
