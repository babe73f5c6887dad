"""The whole /metrics output for the synthetic answers, byte for byte, in both formats.

A change to the exposition shows in review as a diff of tests/golden/. After an intended
change, regenerate the files and review that diff:

    .venv/bin/pytest tests/unit/test_golden.py --update-golden
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from exporter.cli import parse_config
from exporter.target import SingleTarget, Target
from exporter.web import make_app
from tests.support.inventory import publish_synthetic
from tests.support.paths import GOLDEN
from tests.support.wsgi import call

FORMATS = {
    "synthetic.prom": "text/plain",
    "synthetic.openmetrics": "application/openmetrics-text; version=1.0.0",
}


def scrape(accept: str, encoding: str = "identity") -> tuple[str, bytes]:
    """One /metrics answer of the exporter's app holding every job's synthetic snapshot."""
    target = Target(parse_config(["--collect.container-sizes-interval", "5m"], {}).target)
    publish_synthetic(target.state)
    target.exposition.refresh()
    app = make_app(SingleTarget(target))
    status, headers, body = call(app, "/metrics", accept=accept, accept_encoding=encoding)
    assert status.startswith("200")
    return headers["Content-Type"], body


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_metrics_output_equals_the_golden_file(name: str, update_golden: bool) -> None:
    _, body = scrape(FORMATS[name])
    golden: Path = GOLDEN / name
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(body)
    assert golden.exists(), f"{golden} is missing: run with --update-golden"
    expected = golden.read_bytes()
    if body != expected:
        # pytest prints a line diff of text; bytes would only show the first difference
        assert body.decode() == expected.decode(), f"regenerate with --update-golden ({name})"
    assert body == expected


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_gzip_carries_the_same_bytes(name: str) -> None:
    _, plain = scrape(FORMATS[name])
    _, zipped = scrape(FORMATS[name], "gzip")
    assert gzip.decompress(zipped) == plain == (GOLDEN / name).read_bytes()
