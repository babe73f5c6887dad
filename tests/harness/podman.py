"""A private podman API service (Docker-compatible endpoints) for integration tests.

``start_podman()`` runs ``podman system service`` (rootful, vfs storage) on a unix socket
in its own temp dir, with its own containers.conf / storage.conf / registries.conf so the
host's configuration and storage are not used. ``Podman.cli()`` runs the podman CLI
against the same storage.

Two builds (``PodmanBuild``): Podman 4.3 is the system's /usr/bin/podman; Podman 5.8 runs in
the forky chroot tests/harness/podman5.py caches. For 5.8 each instance mounts an overlay of
that tree (a mount point of its own, so runc's remount of / works with vfs layers), with
/proc, /sys (cgroups) and /dev, and binds its own root directory at the same path inside:
paths (configs, storage, the socket, build contexts) are the same on both sides. Podman 5.8
needs ``runtime = "runc"`` (crun refuses this host's hybrid cgroups), no network
(netavark has no nft here) and ``--memory`` of 32m or more. ``close()`` lazily unmounts
everything in reverse order and checks that nothing is left mounted before deleting.

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
    kill_processes_under,
    remove_root,
    run,
    unmount_under,
)
from tests.harness.dockerd import (
    _mounts_under as mounts_under,
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
from tests.support.process import dies_with_the_suite
from tests.support.wait import wait_until

PODMAN = "/usr/bin/podman"
VERSIONS = ("4.3", "5.8")  # the integration matrix: system Podman, forky chroot


@dataclass(frozen=True)
class PodmanBuild:
    """Which podman to run: the system's (``chroot`` None) or one in a cached chroot."""

    version: str
    chroot: Path | None = None  # the cached tree, mounted as an overlay per instance

    @property
    def runtime(self) -> str | None:
        return "runc" if self.chroot is not None else None


SYSTEM_PODMAN = PodmanBuild("4.3")


def podman_build(version: str) -> PodmanBuild:
    """The build of ``version`` (5.8: its chroot made first when not cached)."""
    if version == SYSTEM_PODMAN.version:
        return SYSTEM_PODMAN
    from tests.harness import podman5

    return PodmanBuild(podman5.VERSION, podman5.fetch())


def build_unavailable(version: str) -> str | None:
    """``None`` if a private podman of ``version`` can be run here, else a reason."""
    if version == SYSTEM_PODMAN.version:
        return podman_available()
    from tests.harness import podman5

    return podman5.unavailable()


ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

_CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"{runtime}
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
    build: PodmanBuild = SYSTEM_PODMAN
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    # a chroot build's mount namespace, held by one process (see mount_chroot)
    _holder: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

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
        if self.build.chroot is not None:  # this host's hybrid cgroups: one warning per command
            env["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1"
        if extra:
            env.update(extra)
        return env

    @property
    def fs(self) -> Path:
        """Where a chroot build's overlay is mounted (its ``/``)."""
        return self.root / "fs"

    def global_args(self) -> list[str]:
        chroot = []
        if self._holder is not None:  # enter its namespace: its root is the chroot's
            chroot = ["nsenter", f"--mount=/proc/{self._holder.pid}/ns/mnt", "--"]
        return [
            *chroot,
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
        """``podman <same storage flags as the service> ARGS`` (text, output captured), in
        ``root`` unless ``cwd``: 4.3's conmon writes its ``oom`` marker in its working
        directory."""
        return run(
            [*self.global_args(), *args],
            check=check,
            env=self.env(env),
            input=input,
            cwd=cwd or self.root,
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

    def mount_chroot(self, timeout: float = 30.0) -> None:
        """A chroot build's tree: an overlay of the cached chroot, with /proc, /sys, /dev and
        this instance's root (at the same path) inside, made the root of a private mount
        namespace held by one ``sleep``. No-op for the system build.

        Not chroot(1): a container's exec joins the container's mount namespace at that
        namespace's root, which pivot_root only moves when the caller's root is the
        namespace root; under chroot(1) ``podman exec`` ran on the host's ``/``."""
        chroot = self.build.chroot
        if chroot is None:
            return
        upper, work, fs = self.root / "upper", self.root / "work", self.fs
        for d in (upper, work, fs):
            d.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={chroot},upperdir={upper},workdir={work}"
        inner = fs / str(self.root).lstrip("/")
        steps = [
            ["mount", "-t", "overlay", "overlay", "-o", options, str(fs)],
            ["mount", "--make-private", str(fs)],
            ["mount", "-t", "proc", "proc", str(fs / "proc")],
            ["mount", "--rbind", "/sys", str(fs / "sys")],
            ["mount", "--make-rslave", str(fs / "sys")],
            ["mount", "--rbind", "/dev", str(fs / "dev")],
            ["mount", "--make-rslave", str(fs / "dev")],
            ["mkdir", "-p", str(inner)],
            ["mount", "--bind", str(self.root), str(inner)],  # not rbind: fs stays outside
        ]
        for argv in steps:
            run(argv, timeout=30)
        ready = self.root / "ns-ready"
        script = (
            f"set -e; cd {fs}; mkdir -p .oldroot; pivot_root . .oldroot; cd /;"
            f" umount -l /.oldroot; rmdir /.oldroot; touch {ready}; exec sleep infinity"
        )
        with open(self.root / "ns.log", "ab") as log:
            self._holder = subprocess.Popen(
                dies_with_the_suite(
                    ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        holder = self._holder
        wait_until(
            ready.exists,
            timeout,
            what=f"the podman {self.build.version} mount namespace",
            alive=lambda: holder.poll() is None,
            diagnostics=lambda: (self.root / "ns.log").read_text(errors="replace")[-2000:],
        )

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
            kill_processes_under(self.root)
            if self._holder is not None:
                self._holder.kill()
                self._holder.wait(10)
                self._holder = None
            unmount_under(self.root)
            left = mounts_under(self.root)
            if left:  # never rmtree into a /dev or /sys still bound inside
                raise RuntimeError(f"podman close: still mounted under {self.root}: {left}")
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


def start_podman(base: Path | None = None, build: PodmanBuild = SYSTEM_PODMAN) -> Podman:
    reason = podman_available() if build.chroot is None else build_unavailable(build.version)
    if reason is not None:
        raise RuntimeError(f"cannot start podman {build.version}: {reason}")
    root = Path(tempfile.mkdtemp(prefix="pod-", dir=str(base) if base else "/tmp")).resolve()
    p = Podman(root=root, unix_socket=root / "podman.sock", build=build)
    try:
        runtime = f'\nruntime = "{build.runtime}"' if build.runtime else ""
        (root / "containers.conf").write_text(_CONTAINERS_CONF.format(root=root, runtime=runtime))
        (root / "storage.conf").write_text(_STORAGE_CONF.format(root=root))
        (root / "registries.conf").write_text("unqualified-search-registries = []\n")
        p.mount_chroot()
        p.start()
    except BaseException:
        p.close()
        raise
    return p


@contextlib.contextmanager
def podman_context(
    base: Path | None = None, build: PodmanBuild = SYSTEM_PODMAN
) -> Iterator[Podman]:
    p = start_podman(base, build)
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
