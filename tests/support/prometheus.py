"""The one Prometheus runner (Debian's prometheus package), and promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.env import clean_env, need
from tests.support.process import ManagedProcess, dies_with_the_suite, free_port
from tests.support.wait import wait_until

PROMETHEUS_PATHS = ("/usr/bin/prometheus",)
PROMTOOL_PATHS = ("/usr/bin/promtool",)


def _find(name: str, paths: tuple[str, ...]) -> str | None:
    return shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)


def promtool() -> str:
    """promtool's path; skips (fails on CI) when it is not installed."""
    exe = _find("promtool", PROMTOOL_PATHS)
    need(None if exe else "promtool not installed (Debian package prometheus)")
    assert exe is not None
    return exe


def run_promtool(
    *args: str, cwd: Path | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run promtool; its exit status and output are the caller's to check."""
    return subprocess.run(
        [promtool(), *args], cwd=cwd, input=input, capture_output=True, timeout=300, check=False
    )


class Prometheus(ManagedProcess):
    """A real Prometheus on a loopback port with its own TSDB under ``workdir``."""

    def __init__(self, config: Path, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        binary = _find("prometheus", PROMETHEUS_PATHS)
        need(None if binary else "prometheus not installed (Debian package prometheus)")
        assert binary is not None
        self.port = free_port()
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        log = workdir / "prometheus.log"
        super().__init__(dies_with_the_suite(argv), log, env=clean_env(), cwd=config.parent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **params: str) -> Any:
        """The JSON answer of an API path (also the error body of a 400/422)."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            if not err.headers.get("Content-Type", "").startswith("application/json"):
                raise  # e.g. 503 "Service Unavailable" while it starts: an OSError to retry
            return json.loads(body)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_until(self.ready, timeout, "prometheus ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr!r}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.get("/api/v1/targets")["data"]["activeTargets"]
        return targets

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``check``; on giving up, say why: each scrape target's health and last error,
        and Prometheus' own log tail (the last answer of ``check`` is in the message too)."""
        return wait_until(
            check,
            timeout,
            what=what,
            alive=self.running,
            diagnostics=lambda: (
                f"{self.targets_health()}\nexit status {self.returncode}; log:\n{self.log(20)}"
            ),
        )

    def targets_health(self) -> str:
        """One line per scrape target: job, instance, health, last error (for failure messages)."""
        try:
            targets = self.active_targets()
        except (OSError, ValueError, KeyError) as exc:
            return f"scrape targets: unknown ({exc!r})"
        lines = [
            f"  {t['labels'].get('job')} {t['labels'].get('instance')}: {t.get('health')}"
            + (f" ({t['lastError']})" if t.get("lastError") else "")
            for t in targets
        ]
        return "scrape targets:\n" + ("\n".join(lines) if lines else "  none")


RunPrometheus = Callable[[Path], Prometheus]


NODE_EXPORTER_PATHS = ("/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter")


class NodeExporter(ManagedProcess):
    """A real node_exporter (Debian's prometheus-node-exporter) on a loopback port, with only
    its filesystem collector: what the capacity rules join with."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        binary = _find("prometheus-node-exporter", NODE_EXPORTER_PATHS)
        need(None if binary else "node_exporter not installed (prometheus-node-exporter)")
        assert binary is not None
        self.port = free_port()
        argv = [
            binary,
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--collector.disable-defaults",
            "--collector.filesystem",
        ]
        super().__init__(
            dies_with_the_suite(argv), workdir / "node-exporter.log", env=clean_env(), cwd=workdir
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=2) as resp:
            return bool(resp.status == 200)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(self.ready, timeout, "node_exporter ready")
