"""Issue 20, item 13: Python warnings come out as log lines of the chosen format, once per
cause, never as raw lines in the middle of logfmt or JSON output."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest
from urllib3.exceptions import InsecureRequestWarning

from exporter import logs
from exporter.logs import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    getattr(logs, "_warnings_seen", {}).clear()  # each test sees each cause for the first time
    with warnings.catch_warnings():  # restores warnings.showwarning and the filters
        warnings.simplefilter("always")  # what urllib3 asks for its security warnings
        yield
    root.handlers[:] = handlers
    root.setLevel(level)


def insecure(host: str) -> None:
    warnings.warn(
        f"Unverified HTTPS request is being made to host '{host}'.",
        InsecureRequestWarning,
        stacklevel=2,
    )


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_warnings_are_log_lines_once_per_cause(fmt, capsys, restore_logging):
    setup_logging("info", fmt)
    for _ in range(5):
        insecure("10.0.0.1")
        insecure("10.0.0.2")
    logging.getLogger("exporter").info("after")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert [(r["level"], r["source"], r["msg"]) for r in records] == [
            (
                "warn",
                "py.warnings",
                "InsecureRequestWarning: Unverified HTTPS request is being made to host"
                " '10.0.0.1'.",
            ),
            (
                "warn",
                "py.warnings",
                "InsecureRequestWarning: Unverified HTTPS request is being made to host"
                " '10.0.0.2'.",
            ),
            ("info", "exporter", "after"),
        ]
    else:
        assert lines[0].endswith(
            ' level=warn source=py.warnings msg="InsecureRequestWarning: Unverified HTTPS'
            " request is being made to host '10.0.0.1'.\""
        )
        assert lines[2].endswith(" level=info source=exporter msg=after")
