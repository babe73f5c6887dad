"""The real engine: started by the suite from tests/harness/, never the user's own.

Without it these tests skip on a developer machine and fail on CI (CI=true).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.dockerd import Engine, dockerd_available, engine_context
from tests.harness.scenario import Scenario, build_scenario
from tests.support.env import need


def _real_engine() -> Iterator[Engine]:
    need(dockerd_available())
    with engine_context() as eng:
        yield eng


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The real dockerd, with unix socket and mutual-TLS TCP, started for this session."""
    yield from _real_engine()


@pytest.fixture
def fresh_engine() -> Iterator[Engine]:
    """A real dockerd of the test's own, for tests that change the engine's state."""
    yield from _real_engine()


@pytest.fixture(scope="session")
def scenario(engine: Engine) -> Scenario:
    return build_scenario(engine)
