"""Child processes the tests start: one managed-process type, and the exporter built on it."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tests.support.promql import Samples, parse_samples
from tests.support.wait import wait_until

# Ports for the servers the tests start come from below the kernel's ephemeral range
# (32768-60999 by default), so no outgoing connection can take one between the moment it is
# chosen and the moment its server binds it. Test runs that share the machine (scripts/
# test-pythons runs three side by side) each get their own slice: TEST_PORT_SLICE="k/n".
PORT_RANGE = (20000, 32000)
_ports: Iterator[int] | None = None


def _port_candidates() -> Iterator[int]:
    index, _, count = os.environ.get("TEST_PORT_SLICE", "0/1").partition("/")
    low, high = PORT_RANGE
    size = (high - low) // int(count)
    first = low + int(index) * size
    start = os.getpid() % size  # two unsliced runs at once most likely start far apart
    return itertools.cycle([first + (start + i) % size for i in range(size)])


def free_port() -> int:
    """A free TCP port on 127.0.0.1, outside the ephemeral range, never the same one twice
    in a row (each call takes the next free port of this run's slice)."""
    global _ports
    if _ports is None:
        _ports = _port_candidates()
    for port in itertools.islice(_ports, PORT_RANGE[1] - PORT_RANGE[0]):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): the next one
            return port
    raise AssertionError(f"no free port in this run's slice of {PORT_RANGE}")


def dies_with_the_suite(argv: Sequence[str]) -> list[str]:
    """``argv`` run through util-linux's ``setpriv --pdeathsig TERM`` where it exists: the
    child gets SIGTERM when the test process dies without its teardown (killed by a CI
    timeout, say), instead of living on. ``setpriv`` execs ``argv``, so the pid is the
    child's own. Call it from the main thread: the signal follows the creating thread."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A child process with its output in a log file: start, poll, terminate, then kill."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def wait_until(
        self, check: Callable[[], object], timeout: float = 30.0, what: str = ""
    ) -> object:
        """Poll ``check`` while the process lives; fail with its log when it dies or times out."""
        return wait_until(
            check,
            timeout,
            what=what or f"{Path(self.argv[0]).name}: condition",
            alive=self.running,
            diagnostics=lambda: f"exit status {self.returncode}; log:\n{self.log()}",
        )

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, and SIGKILL if it has not exited within ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes, dict[str, str]]:
    """GET on loopback: status, body and headers, also for 4xx/5xx answers."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def exporter_command() -> list[str]:
    """The installed console script of this venv, or ``python -m exporter``."""
    exe = shutil.which("docker-inventory-exporter", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "exporter"]


class ExporterProcess(ManagedProcess):
    """The real exporter, listening on a loopback port."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = list(args)
        argv = [*exporter_command(), f"--web.listen-address=127.0.0.1:{self.port}", *args]
        super().__init__(argv, log_path, env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        return http_get(self.url + path, headers)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self.get("/-/ready")[0] == 200, timeout, "exporter ready")

    def metrics_text(self) -> str:
        status, body, _ = self.get("/metrics")
        assert status == 200
        return body.decode()

    def samples(self) -> Samples:
        return parse_samples(self.metrics_text())

    def wait_for(self, predicate: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
        """Poll /metrics until ``predicate(samples)`` holds; fail with the log otherwise."""

        seen: list[Samples] = []

        def check() -> Samples | None:
            samples = self.samples()
            seen[:] = [samples]
            return samples if predicate(samples) else None

        def why() -> str:
            state = exporter_state(seen[0]) if seen else "no answer from /metrics yet"
            return f"{state}\nexit status {self.returncode}; log:\n{self.log(30)}"

        result = wait_until(
            check, timeout, what="exporter metrics condition", alive=self.running, diagnostics=why
        )
        assert isinstance(result, dict)
        return result


STATE_SERIES = (
    "docker_up",
    "docker_exporter_collection_success",
    "docker_exporter_collection_errors_total",
)


def exporter_state(samples: Samples) -> str:
    """The exporter's own view of its engine, for a failure message: up, each job's success."""
    lines = sorted(
        f"  {name}{{{','.join(f'{k}={v!r}' for k, v in sorted(labels))}}} {value:g}"
        for (name, labels), value in samples.items()
        if name in STATE_SERIES
    )
    return "last /metrics answer:\n" + ("\n".join(lines) if lines else "  no docker_up")
