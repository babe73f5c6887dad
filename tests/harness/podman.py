"""A private podman API service (Docker-compatible endpoints) for integration tests.

``start_podman()`` runs ``podman system service`` (rootful, vfs storage) on a unix socket
in its own temp dir, with its own containers.conf / storage.conf / registries.conf so the
host's configuration and storage are not used. ``Podman.cli()`` runs the podman CLI
against the same storage.

Without systemd podman cannot schedule health checks (it uses systemd timers), so the
scenario drives them by hand with ``podman healthcheck run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.dockerd import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    ApiDaemon,
    kill_cgroup_members,
    remove_root,
    run,
)
from tests.harness.scenario import (
    APP,
    APP2,
    APP2_BLOB,
    APP2_OLD_BLOB,
    APP_BLOB,
    BASE,
    CREATED,
    EXITED0,
    EXITED3,
    HEALTHY,
    LONG_SLEEP,
    PAUSED,
    RUNNING,
    RUNNING_LABELS,
    UNHEALTHY,
    UNUSED,
    UNUSED_BLOB,
    blob,
    write_context,
)
from tests.support.env import clean_env

PODMAN = "/usr/bin/podman"
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

_CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{root}/tmp"
volume_path = "{root}/volumes"

[network]
network_config_dir = "{root}/net"
"""

_STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""


@dataclass
class Podman(ApiDaemon):
    root: Path
    unix_socket: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.root / "podman.log"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = clean_env(
            {
                "CONTAINERS_CONF": str(self.root / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
                "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
                "TMPDIR": str(self.root / "tmp"),  # image build scratch space
                "XDG_RUNTIME_DIR": str(self.root / "xdg"),
            }
        )
        for var in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINER_SSHKEY"):
            env.pop(var, None)
        if extra:
            env.update(extra)
        return env

    def global_args(self) -> list[str]:
        return [
            PODMAN,
            "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "run"),
            "--storage-driver", "vfs",
            "--tmpdir", str(self.root / "tmp"),
            "--volumepath", str(self.root / "volumes"),
            "--network-config-dir", str(self.root / "net"),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
        ]  # fmt: skip

    def cli(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float | None = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """``podman <same storage flags as the service> ARGS`` (text, output captured)."""
        return run(
            [*self.global_args(), *args],
            check=check,
            env=self.env(env),
            input=input,
            cwd=cwd,
            timeout=timeout,
        )

    def inspect(self, *refs: str) -> list[dict[str, object]]:
        data: list[dict[str, object]] = json.loads(self.cli("inspect", *refs).stdout)
        return data

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        for sub in ("tmp", "xdg", "net", "volumes"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        argv = [*self.global_args(), "system", "service", "--time=0", self.unix_url]
        self._launch(argv, self.env(), timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the API service (containers keep running: they belong to conmon)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None

    def close(self) -> None:
        """Stop the service, remove all containers, kill leftovers, unmount, delete root."""
        try:
            self.stop()
            ids: list[str] = []
            with contextlib.suppress(Exception):
                out = self.cli("ps", "-aq", "--no-trunc", check=False, timeout=30).stdout
                ids = out.split()
                self.cli("rm", "-af", "-t", "0", check=False, timeout=60)
            kill_cgroup_members(ids)
        finally:
            remove_root(self.root)

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def podman_available() -> str | None:
    """``None`` if a private rootful podman service can be run here, else a reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "podman harness needs root (not running as uid 0)"
    if not os.access(PODMAN, os.X_OK):
        return f"{PODMAN} not found or not executable"
    for tool in ("conmon", "runc"):
        if shutil.which(tool, path=clean_env()["PATH"]) is None:
            return f"{tool} not found on PATH"
    if not os.access("/bin/busybox", os.X_OK):
        return "/bin/busybox (busybox-static) not found; test images are built from it"
    return None


def start_podman(base: Path | None = None) -> Podman:
    reason = podman_available()
    if reason is not None:
        raise RuntimeError(f"cannot start podman: {reason}")
    root = Path(tempfile.mkdtemp(prefix="pod-", dir=str(base) if base else "/tmp")).resolve()
    p = Podman(root=root, unix_socket=root / "podman.sock")
    try:
        (root / "containers.conf").write_text(_CONTAINERS_CONF.format(root=root))
        (root / "storage.conf").write_text(_STORAGE_CONF.format(root=root))
        (root / "registries.conf").write_text("unqualified-search-registries = []\n")
        p.start()
    except BaseException:
        p.close()
        raise
    return p


@contextlib.contextmanager
def podman_context(base: Path | None = None) -> Iterator[Podman]:
    p = start_podman(base)
    try:
        yield p
    finally:
        p.close()


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class PodmanScenario:
    """Podman names images ``localhost/NAME:TAG``; ids here are ``sha256:<hex>``."""

    base_image: str
    app_image: str  # inv-app:1 == inv-alias:v1
    app2_image: str
    dangling_image: str  # first inv-app:2 build, untagged, no container
    unused_image: str
    containers: Mapping[str, str] = field(default_factory=dict)
    health: bool = False  # inv-healthy / inv-unhealthy exist with that status
    health_note: str = ""
    duration: float = 0.0


def _podman_image_id(p: Podman, ref: str) -> str:
    raw = p.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    return raw if raw.startswith("sha256:") else f"sha256:{raw}"


def _podman_build(p: Podman, ctx: Path, tag: str) -> str:
    p.cli("build", "--network", "none", "--layers", "-t", tag, str(ctx), timeout=180)
    return _podman_image_id(p, tag)


def _podman_health(p: Podman, name: str) -> str:
    state = json.loads(p.cli("inspect", "--format", "{{json .State}}", name).stdout)
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status", ""))


def build_podman_scenario(p: Podman) -> PodmanScenario:
    t0 = time.monotonic()
    build_dir = Path(tempfile.mkdtemp(prefix="build-", dir=p.root))
    base_ctx = write_context(
        build_dir / "base",
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'CMD ["sh"]\n',
        with_busybox=True,
    )
    base = _podman_build(p, base_ctx, BASE)

    def on_base(name: str, size: int, tag: str) -> str:
        ctx = write_context(
            build_dir / name,
            f"FROM localhost/{BASE}\nCOPY {name}.bin /{name}.bin\n",
            {f"{name}.bin": blob(size, name)},
        )
        return _podman_build(p, ctx, tag)

    app = on_base("app", APP_BLOB, APP)
    p.cli("tag", APP, "inv-alias:v1")
    dangling = on_base("app2-old", APP2_OLD_BLOB, APP2)
    app2 = on_base("app2-new", APP2_BLOB, APP2)
    unused = on_base("unused", UNUSED_BLOB, UNUSED)

    containers: dict[str, str] = {}
    labels: list[str] = []
    for key, value in RUNNING_LABELS.items():
        labels += ["--label", f"{key}={value}"]

    def run_d(name: str, *args: str) -> str:
        return p.cli("run", "-d", *ULIMITS, "--name", name, *args).stdout.strip()

    containers[RUNNING] = run_d(RUNNING, *labels, APP, *LONG_SLEEP)
    containers[PAUSED] = run_d(PAUSED, APP, *LONG_SLEEP)
    p.cli("pause", PAUSED)
    containers[EXITED0] = run_d(EXITED0, APP, "sh", "-c", "exit 0")
    containers[EXITED3] = run_d(EXITED3, APP, "sh", "-c", "exit 3")
    containers[CREATED] = p.cli(
        "create", *ULIMITS, "--name", CREATED, APP, *LONG_SLEEP
    ).stdout.strip()
    for name in (EXITED0, EXITED3):
        p.cli("wait", name)

    health, note = True, ""
    try:
        hc = ("--health-interval", "1s", "--health-retries", "1")
        containers[HEALTHY] = run_d(HEALTHY, "--health-cmd", "true", *hc, APP, *LONG_SLEEP)
        containers[UNHEALTHY] = run_d(UNHEALTHY, "--health-cmd", "false", *hc, APP, *LONG_SLEEP)
        # No systemd here, so podman schedules no health check timers: run them by hand.
        p.cli("healthcheck", "run", HEALTHY, check=False)
        p.cli("healthcheck", "run", UNHEALTHY, check=False)
        got = {HEALTHY: _podman_health(p, HEALTHY), UNHEALTHY: _podman_health(p, UNHEALTHY)}
        if got != {HEALTHY: "healthy", UNHEALTHY: "unhealthy"}:
            health, note = False, f"health status after 'podman healthcheck run': {got}"
        else:
            note = "no systemd: statuses set once via 'podman healthcheck run' (no timers)"
    except RuntimeError as exc:
        health, note = False, f"health check containers failed: {str(exc)[-400:]}"

    return PodmanScenario(
        base_image=base,
        app_image=app,
        app2_image=app2,
        dangling_image=dangling,
        unused_image=unused,
        containers=containers,
        health=health,
        health_note=note,
        duration=time.monotonic() - t0,
    )
