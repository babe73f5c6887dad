"""Where things are: the repository, the test tree and the recorded engine answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"
README = REPO / "README.md"
DOCS = REPO / "docs"


def doc_pages() -> list[Path]:
    """README.md, the door, and every page under docs/ (where the reference lives)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def documentation() -> str:
    """The text of every documentation page: a fact is checked wherever it is written."""
    return "\n".join(page.read_text() for page in doc_pages())


def load(name: str) -> Any:
    """A JSON answer under tests/fixtures, e.g. ``load("synthetic/images-1.52.json")``."""
    return json.loads((FIXTURES / name).read_text())
