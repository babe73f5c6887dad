"""The exporter's own identity: ``docker_exporter_build_info``, in node_exporter's style."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib import resources

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from . import metrics as m


def revision() -> str:
    """The source revision written into the package by the image build (ARG REVISION)."""
    try:
        text = resources.files(__package__).joinpath("REVISION").read_text().strip()
    except (OSError, AttributeError):
        return "unknown"
    return text or "unknown"


def build_labels() -> list[str]:
    """The values of docker_exporter_build_info's labels, in their order."""
    return [__version__, revision(), platform.python_version()]


class BuildInfoCollector(Collector):
    def __init__(self) -> None:
        self.labels = build_labels()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(m.BUILD_INFO.name, m.BUILD_INFO.doc, labels=m.BUILD_INFO.labels)
        family.add_metric(self.labels, 1.0)
        yield family
