"""Fixtures shared by both tiers. The helpers themselves live in tests/support/.

Test modules import from tests.support, never from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from exporter.snapshot import InventorySnapshot
from exporter.state import State
from tests.support import inventory
from tests.support.env import ON_CI
from tests.support.process import ExporterProcess
from tests.support.prometheus import Prometheus, RunPrometheus

RunExporter = Callable[..., ExporterProcess]

# On CI every run draws the same examples: a property test cannot fail a landing at random.
# Locally, examples vary from run to run and failures are replayed from .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if ON_CI else "dev")


@pytest.fixture
def run_exporter(tmp_path: Path) -> Iterator[RunExporter]:
    """Factory: ``run_exporter(*args, env=None, wait_ready=True, port=None)``; stopped after."""
    started: list[ExporterProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        port: int | None = None,
    ) -> ExporterProcess:
        exp = ExporterProcess(args, tmp_path / f"exporter-{len(started)}.log", port=port, env=env)
        started.append(exp)
        if wait_ready:
            exp.wait_ready()
        return exp

    yield start
    for exp in started:
        exp.stop()


@pytest.fixture
def synthetic_inventory() -> InventorySnapshot:
    """The inventory of the synthetic API 1.52 answers, collected at inventory.NOW."""
    return inventory.synthetic_inventory()


@pytest.fixture
def exporter_state() -> State:
    """An empty state with the inventory and disk_usage jobs."""
    return State(disk_usage=True)


@pytest.fixture
def run_prometheus(tmp_path: Path) -> Iterator[RunPrometheus]:
    """Factory: ``run_prometheus(config_path)`` starts a real Prometheus; stopped after."""
    started: list[Prometheus] = []

    def start(config: Path) -> Prometheus:
        prom = Prometheus(config, tmp_path / f"prometheus-{len(started)}")
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ from the current output instead of comparing with it",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with --update-golden."""
    return bool(request.config.getoption("--update-golden"))
