"""Shared fixtures: the real engine (started by the suite) and the real exporter process.

Integration tests skip when dockerd is unusable on a developer machine, but fail on CI
(CI=true): there, a missing engine is a broken run, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

FIXTURES = Path(__file__).parent / "fixtures"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str | None) -> None:
    """Skip (or fail on CI) when a real dependency is missing."""
    if reason is None:
        return
    if ON_CI:
        pytest.fail(f"CI=true and the real dependency is unavailable: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


@dataclass
class ExporterProcess:
    proc: subprocess.Popen[str]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def metrics_text(self) -> str:
        status, body, _ = self.get("/metrics")
        assert status == 200
        return body.decode()

    def samples(self) -> Samples:
        return parse_samples(self.metrics_text())

    def wait_for(self, predicate: object, timeout: float = 30.0) -> Samples:
        """Poll /metrics until predicate(samples) is true; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        last: Samples = {}
        while time.monotonic() < deadline:
            try:
                last = self.samples()
                if predicate(last):  # type: ignore[operator]
                    return last
            except (OSError, AssertionError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"condition not met within {timeout}s; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def exporter_command() -> list[str]:
    exe = shutil.which("docker-inventory-exporter", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "exporter"]


@pytest.fixture
def run_exporter(tmp_path: Path) -> Iterator[object]:
    """Factory: run_exporter(*args, env=None, wait_ready=True) -> ExporterProcess."""
    started: list[ExporterProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        port: int | None = None,
    ) -> ExporterProcess:
        port = port or free_port()
        log_path = tmp_path / f"exporter-{len(started)}.log"
        full_env = dict(os.environ if env is None else env)
        argv = [*exporter_command(), f"--web.listen-address=127.0.0.1:{port}", *args]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, text=True
            )
        exp = ExporterProcess(proc, port, log_path, list(args))
        started.append(exp)
        if wait_ready:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"exporter exited {proc.returncode}:\n{exp.log()}")
                try:
                    if exp.get("/-/ready")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                raise AssertionError(f"exporter not ready within 30s:\n{exp.log()}")
        return exp

    yield start
    for exp in started:
        exp.stop()


def _real_engine() -> Iterator[object]:
    from tests.harness.dockerd import dockerd_available, engine_context

    need(dockerd_available())
    with engine_context() as eng:
        yield eng


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """The real dockerd, with unix socket and mutual-TLS TCP, started for this session."""
    yield from _real_engine()


@pytest.fixture
def fresh_engine() -> Iterator[object]:
    """A real dockerd of the test's own, for tests that change the engine's state."""
    yield from _real_engine()


@pytest.fixture(scope="session")
def scenario(engine: object) -> object:
    from tests.harness.scenario import build_scenario

    return build_scenario(engine)  # type: ignore[arg-type]
