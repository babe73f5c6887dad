"""The exposition, rendered once per collection in every format /metrics serves.

A scrape only picks bytes: Prometheus text or OpenMetrics, plain or gzip. Rendering
happens when a job publishes, so many scrapers cost the engine and the CPU nothing more.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

# The classic text format every Prometheus since 2.0 reads (newer clients default to 1.0.0).
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Rendered:
    text: bytes
    text_gzip: bytes
    openmetrics: bytes
    openmetrics_gzip: bytes

    def pick(self, openmetrics: bool, gzipped: bool) -> tuple[bytes, str]:
        if openmetrics:
            return (self.openmetrics_gzip if gzipped else self.openmetrics), OPENMETRICS_TYPE
        return (self.text_gzip if gzipped else self.text), TEXT_TYPE


def render(registry: CollectorRegistry) -> Rendered:
    text = generate_latest(registry)
    openmetrics = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    return Rendered(
        text=text,
        text_gzip=gzip.compress(text, compresslevel=6, mtime=0),
        openmetrics=openmetrics,
        openmetrics_gzip=gzip.compress(openmetrics, compresslevel=6, mtime=0),
    )


class Exposition:
    """Holds the newest rendering; ``refresh`` is called after every job publishes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self.renders = 0
        self._rendered = render(registry)

    @property
    def current(self) -> Rendered:
        return self._rendered

    def refresh(self) -> None:
        with self._lock:
            self._rendered = render(self.registry)
            self.renders += 1
