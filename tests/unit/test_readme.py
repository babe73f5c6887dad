"""The README's metric reference and flag table match the code (they are the public API)."""

from __future__ import annotations

import re

from exporter.cli import build_parser
from exporter.metrics import ALL
from tests.support.paths import REPO

README = (REPO / "README.md").read_text()


def metric_rows() -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\| `([a-z_]+)` \|([^|]*)\|", line)
        if m and m.group(1).startswith("docker_"):
            rows[m.group(1)] = re.findall(r"`([a-z_<>]+)`", m.group(2))
    return rows


def test_every_metric_is_documented_with_its_labels():
    rows = metric_rows()
    for spec in ALL:
        assert spec.name in rows, f"{spec.name} is missing from the README"
        documented = [x for x in rows[spec.name] if x != "label_<key>"]
        assert documented == list(spec.labels), spec.name
    assert set(rows) == {s.name for s in ALL}, "README documents metrics the code lacks"


def test_every_flag_is_documented():
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help", "--version"):
                continue
            bare = flag.replace("--no-", "--")
            assert bare in README or f"--[no-]{bare[2:]}" in README, flag
