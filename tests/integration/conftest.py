"""The real engines: started by the suite from tests/harness/, never the user's own.

Every test that uses ``engine``, ``fresh_engine`` or ``scenario`` runs once per engine
version: Debian 12's dockerd 20.10 (API 1.41), Debian 13's dockerd 26.1 (API 1.45) and
Debian sid's dockerd 28.5 (API 1.51) with the classic image store (``docker-28.5``) and with
the containerd image store (``docker-28.5-containerd``); the newer ones are fetched and
unpacked by tests/harness/debian_docker.py. Every test that uses ``podman_build`` runs once
per Podman version: Debian 12's Podman 4.3 and Podman 5.8 in Debian forky's chroot
(tests/harness/podman5.py). Without an engine these tests skip on a developer machine and
fail on CI (CI=true).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import debian_docker
from tests.harness import podman as podman_harness
from tests.harness.dockerd import (
    Engine,
    EngineBuild,
    dockerd_available,
    engine_context,
)
from tests.harness.scenario import Scenario, build_scenario
from tests.support.env import need

ENGINE_VERSIONS = debian_docker.ENGINE_VERSIONS


@pytest.fixture(scope="session", params=ENGINE_VERSIONS, ids=lambda v: f"docker-{v}")
def engine_build(request: pytest.FixtureRequest) -> EngineBuild:
    """Which dockerd the engine fixtures start (the suite runs once per version)."""
    need(debian_docker.build_unavailable(request.param))
    return debian_docker.build_for(request.param)


@pytest.fixture(scope="session", params=podman_harness.VERSIONS, ids=lambda v: f"podman-{v}")
def podman_build(request: pytest.FixtureRequest) -> podman_harness.PodmanBuild:
    """Which podman ``start_podman(build=...)`` runs (the test runs once per version)."""
    need(podman_harness.build_unavailable(request.param))
    return podman_harness.podman_build(request.param)


def _real_engine(build: EngineBuild) -> Iterator[Engine]:
    need(dockerd_available(build))
    with engine_context(build=build) as eng:
        yield eng


@pytest.fixture(scope="session")
def engine(engine_build: EngineBuild) -> Iterator[Engine]:
    """The real dockerd, with unix socket and mutual-TLS TCP, started for this session."""
    yield from _real_engine(engine_build)


@pytest.fixture
def fresh_engine(engine_build: EngineBuild) -> Iterator[Engine]:
    """A real dockerd of the test's own, for tests that change the engine's state."""
    yield from _real_engine(engine_build)


@pytest.fixture(scope="session")
def scenario(engine: Engine) -> Scenario:
    return build_scenario(engine)
