"""Where things are: the repository, the test tree and the recorded engine answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"


def load(name: str) -> Any:
    """A JSON answer under tests/fixtures, e.g. ``load("synthetic/images-1.52.json")``."""
    return json.loads((FIXTURES / name).read_text())
