"""The documentation's metric reference and flag table match the code (they are the public
API), wherever they live (README.md or a page under docs/); README.md stays a door: short, and
every docs page reachable from it."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.cli import build_parser
from exporter.metrics import ALL
from tests.support.paths import DOCS, README, documentation

TEXT = documentation()


def metric_rows() -> dict[str, list[str]]:
    rows = {}
    for line in TEXT.splitlines():
        m = re.match(r"\| `([a-z_]+)` \|([^|]*)\|", line)
        if m and m.group(1).startswith("docker_"):
            rows[m.group(1)] = re.findall(r"`([a-z_<>]+)`", m.group(2))
    return rows


def test_every_metric_is_documented_with_its_labels():
    rows = metric_rows()
    for spec in ALL:
        assert spec.name in rows, f"{spec.name} is missing from the documentation"
        documented = [x for x in rows[spec.name] if x != "label_<key>"]
        assert documented == list(spec.labels), spec.name
    assert set(rows) == {s.name for s in ALL}, "the documentation has metrics the code lacks"


def test_every_flag_is_documented():
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help", "--version"):
                continue
            bare = flag.replace("--no-", "--")
            assert bare in TEXT or f"--[no-]{bare[2:]}" in TEXT, flag


def test_the_readme_is_a_door():
    assert len(README.read_text().splitlines()) < 400


def test_every_docs_page_is_reachable_from_the_readme():
    """Linked from README.md, or from a page it links to (docs/x.md or x.md#anchor)."""
    linked = {"README.md"}
    todo = [README]
    while todo:
        page = todo.pop()
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            path = (page.parent / target).resolve()
            if path.is_file() and path.name not in linked:
                linked.add(path.name)
                todo.append(path)
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages - linked == set(), "docs pages no link leads to"


def test_every_link_between_pages_lands_on_a_heading():
    """A section that moved takes its anchor with it: no link to a heading that is gone."""

    def anchors(path: Path) -> set[str]:
        found = set()
        for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
            slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            found.add(slug)
        return found

    broken = []
    for page in [README, *DOCS.glob("*.md")]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
            path = (page.parent / target).resolve() if target else page
            if target.startswith("http") or not path.is_file() or path.suffix != ".md":
                continue
            if anchor not in anchors(path):
                broken.append(f"{page.name} -> {target or page.name}#{anchor}")
    assert broken == []


def test_every_link_to_a_page_finds_the_page():
    """A page that moved takes its links with it: a relative link names a file that exists."""
    broken = []
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(
            r"\]\(([^)#\s:]+\.(?:md|yml|json|cfg|py))(?:#[^)\s]*)?\)", page.read_text()
        ):
            if not (page.parent / target).is_file():
                broken.append(f"{page.name} -> {target}")
    assert broken == []
