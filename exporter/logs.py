"""Log lines in the Prometheus ecosystem's formats: logfmt (the default) or JSON.

    ts=2026-11-28T02:40:14.123Z level=info source=exporter.jobs msg="inventory job: recovered"
    {"ts": "2026-11-28T02:40:14.123Z", "level": "info", "source": "exporter.jobs", "msg": "..."}

Either way a message is one line: a newline in it (from an engine's answer, say) is escaped.
Python warnings (urllib3's ``InsecureRequestWarning``, say) come out as log lines of the
same format from ``py.warnings``, each cause once, instead of raw lines on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import warnings
from typing import Any, TextIO

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("logfmt", "json")
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


def _fields(record: logging.LogRecord) -> dict[str, str]:
    millis = int(record.msecs)
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"
    message = record.getMessage()
    if record.exc_info:
        # a traceback is kept, as part of the one line
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return {
        "ts": ts,
        "level": _NAMES.get(record.levelno, "error"),
        "source": record.name,
        "msg": message,
    }


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False)


_WARNINGS_SEEN_MAX = 1000  # causes remembered; beyond, the oldest half is forgotten
_warnings_seen: dict[tuple[type[Warning], str], None] = {}
_warnings_lock = threading.Lock()


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning``: one log line per cause (category and text)."""
    text = str(message)
    with _warnings_lock:
        key = (category, text)
        if key in _warnings_seen:
            return
        if len(_warnings_seen) >= _WARNINGS_SEEN_MAX:
            for old in list(_warnings_seen)[: _WARNINGS_SEEN_MAX // 2]:
                del _warnings_seen[old]
        _warnings_seen[key] = None
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, text)


def route_warnings() -> None:
    """Python warnings through logging, once per cause."""
    handler: Any = _log_warning
    warnings.showwarning = handler


def setup_logging(level: str, fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # APScheduler logs every run at INFO and every skip at WARNING; the jobs log what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
    # asyncio's own complaints (a client that vanished mid-handshake) are not ours to repeat
    logging.getLogger("asyncio").setLevel(logging.DEBUG if level == "debug" else logging.CRITICAL)
    route_warnings()
