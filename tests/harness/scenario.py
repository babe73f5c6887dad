"""Populate a private engine with every state an inventory exporter has to report.

No registry is reachable, so every image is built ``FROM scratch`` around the static
``/bin/busybox`` with the legacy builder (``DOCKER_BUILDKIT=0``). Most images sit on
the shared base ``inv-base:1`` (busybox, ~2 MB) and add a file of a distinct size, so
the layers are shared and the sizes differ.

Running containers are started with ``--init`` so that ``docker stop`` / a daemon
shutdown does not wait out the 10 s grace period (``sleep`` as PID 1 ignores SIGTERM).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.dockerd import Engine
from tests.support.wait import wait_until

BUSYBOX = Path("/bin/busybox")

# ---- names (import these in tests rather than repeating the strings)
BASE = "inv-base:1"
APP = "inv-app:1"
APP_TAGS = ("inv-alias:v1", "inv-app:1", "inv-app:latest")  # sorted, all on one image
APP2 = "inv-app:2"
MOVING = "inv-moving:1"
UNUSED = "inv-unused:1"
HEALTH = "inv-health:1"
BK = "inv-bk:1"

RUNNING = "inv-running"
PAUSED = "inv-paused"
EXITED0 = "inv-exited0"
EXITED3 = "inv-exited3"
CREATED = "inv-created"
HEALTHY = "inv-healthy"
UNHEALTHY = "inv-unhealthy"
OUTDATED = "inv-outdated"
LOOPING = "inv-looping"  # --restart=on-failure:2 of a command exiting 2: ends exited, 2 restarts
OOM = "inv-oom"  # --memory=16m, outgrows it: OOM-killed, exit 137

VOL_USED = "inv-vol-used"
VOL_UNUSED = "inv-vol-unused"

WEIRD_LABEL = 'say "hi" \\ back\nslash é'
RUNNING_LABELS: Mapping[str, str] = {
    "com.docker.compose.project": "demo",
    "com.docker.compose.service": "web",
    "weird": WEIRD_LABEL,
}

# file sizes added on top of the base (bytes)
APP_BLOB = 100 * 1024
APP2_OLD_BLOB = 150 * 1024
APP2_BLOB = 200 * 1024
UNUSED_BLOB = 300 * 1024
MOVING_OLD_BLOB = 60 * 1024
MOVING_BLOB = 70 * 1024
HEALTH_BLOB = 10 * 1024
BK_BLOB = 20 * 1024
VOL_USED_BYTES = 50 * 1024
VOL_UNUSED_BYTES = 20 * 1024
RUNNING_RW_BYTES = 30 * 1024  # written into inv-running's writable layer

# state / exit code per container as docker reports them right after build_scenario()
EXPECTED_STATE: Mapping[str, str] = {
    RUNNING: "running",
    PAUSED: "paused",
    EXITED0: "exited",
    EXITED3: "exited",
    CREATED: "created",
    HEALTHY: "running",
    UNHEALTHY: "running",
    OUTDATED: "running",
    LOOPING: "exited",
    OOM: "exited",
}
EXPECTED_EXIT_CODE: Mapping[str, int] = {EXITED0: 0, EXITED3: 3}
EXPECTED_HEALTH: Mapping[str, str] = {HEALTHY: "healthy", UNHEALTHY: "unhealthy"}

LEGACY = {"DOCKER_BUILDKIT": "0"}
LONG_SLEEP = ("sleep", "100000")
FAST_STOP = ("--init",)  # tini forwards SIGTERM: stop/shutdown take milliseconds


@dataclass(frozen=True)
class Scenario:
    # images: full ids "sha256:..."
    base_image: str
    app_image: str  # inv-app:1 == inv-app:latest == inv-alias:v1
    app2_image: str  # current inv-app:2
    dangling_image: str  # first inv-app:2 build: untagged, no container
    moving_image: str  # current inv-moving:1, no container
    outdated_image: str  # first inv-moving:1 build: untagged, used by inv-outdated
    unused_image: str  # inv-unused:1, tagged, no container
    health_image: str  # inv-health:1, HEALTHCHECK in the Dockerfile
    bk_image: str | None  # inv-bk:1 built with BuildKit (None if BuildKit failed)
    build_cache: bool  # /system/df has BuildCache records
    build_cache_note: str  # why not, when build_cache is False
    # container name -> full id
    containers: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = (VOL_USED, VOL_UNUSED)
    build_dir: Path = Path()
    duration: float = 0.0  # seconds build_scenario() took

    @property
    def image_ids(self) -> Mapping[str, str]:
        """Tag (or a descriptive name for untagged images) -> image id."""
        ids = {
            BASE: self.base_image,
            APP: self.app_image,
            "inv-app:latest": self.app_image,
            "inv-alias:v1": self.app_image,
            APP2: self.app2_image,
            "<dangling>": self.dangling_image,
            MOVING: self.moving_image,
            "<outdated>": self.outdated_image,
            UNUSED: self.unused_image,
            HEALTH: self.health_image,
        }
        if self.bk_image:
            ids[BK] = self.bk_image
        return ids

    def container_id(self, name: str) -> str:
        return self.containers[name]


# --------------------------------------------------------------------------- helpers


def blob(size: int, seed: str) -> bytes:
    """``size`` deterministic, incompressible bytes (sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def write_context(
    directory: Path,
    dockerfile: str,
    files: Mapping[str, bytes] | None = None,
    with_busybox: bool = False,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        (directory / name).write_bytes(content)
    if with_busybox:
        shutil.copy2(BUSYBOX, directory / "busybox")
    return directory


def build(
    engine: Engine,
    context: Path,
    tags: tuple[str, ...],
    *,
    buildkit: bool = False,
    extra: tuple[str, ...] = (),
) -> str:
    """Build ``context`` and return the full image id."""
    args = ["build", "--network", "host"] if buildkit else ["build", "--rm", "--force-rm"]
    for tag in tags:
        args += ["-t", tag]
    iidfile = context.parent / f"{context.name}.iid"
    args += ["--iidfile", str(iidfile), *extra, str(context)]
    engine.cli(*args, env={"DOCKER_BUILDKIT": "1" if buildkit else "0"}, timeout=180)
    image_id = iidfile.read_text().strip()
    if not image_id.startswith("sha256:"):
        image_id = image_id_of(engine, tags[0])
    return image_id


def image_id_of(engine: Engine, ref: str) -> str:
    return engine.cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def container_id_of(engine: Engine, name: str) -> str:
    return engine.cli("container", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def container_state(engine: Engine, name: str) -> dict[str, object]:
    state: dict[str, object] = json.loads(
        engine.cli("container", "inspect", "--format", "{{json .State}}", name).stdout
    )
    return state


def wait_health(engine: Engine, name: str, status: str, timeout: float = 30.0) -> None:
    def health() -> object:
        found = container_state(engine, name).get("Health")
        return found.get("Status") if isinstance(found, dict) else None

    wait_until(lambda: health() == status, timeout, what=f"{name}: health {status!r}",
               interval=0.2, diagnostics=lambda: f"health is {health()!r}")  # fmt: skip


def wait_status(engine: Engine, name: str, status: str, timeout: float = 30.0) -> None:
    def current() -> object:
        return container_state(engine, name).get("Status")

    wait_until(lambda: current() == status, timeout, what=f"{name}: status {status!r}",
               diagnostics=lambda: f"status is {current()!r}")  # fmt: skip


def wait_loop_ended(engine: Engine, name: str, restarts: int, timeout: float = 60.0) -> None:
    """Wait until a restart-policy loop is over: exited, after ``restarts`` restarts."""

    def ended() -> object:
        (info,) = engine.inspect(name, kind="container")
        state: dict[str, object] = info["State"]  # type: ignore[assignment]
        return state["Status"] == "exited" and info["RestartCount"] == restarts

    wait_until(ended, timeout, what=f"{name}'s restart loop ends", diagnostics=engine.log_tail)


def remove_container(engine: Engine, name: str) -> None:
    """Force-remove a container (and its anonymous volumes); missing is fine."""
    engine.cli("rm", "-f", "-v", name, check=False)


def remove_image(engine: Engine, ref: str, force: bool = False) -> None:
    """``docker rmi`` (a tag only untags a multi-tag image; an id removes all tags)."""
    engine.cli("rmi", *(["-f"] if force else []), ref)


def run_detached(engine: Engine, name: str, image: str, *args: str) -> str:
    """``docker run -d --init --name NAME ARGS... IMAGE sleep 100000``; returns the id."""
    out = engine.cli("run", "-d", *FAST_STOP, "--name", name, *args, image, *LONG_SLEEP)
    return out.stdout.strip()


# --------------------------------------------------------------------------- the scenario

_BASE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
"""


def _on_base(
    engine: Engine,
    build_dir: Path,
    name: str,
    size: int,
    tags: tuple[str, ...],
    extra: str = "",
) -> str:
    """Build ``FROM inv-base:1`` + a ``size``-byte file ``/NAME.bin`` (+ ``extra`` lines)."""
    dockerfile = f"FROM {BASE}\nCOPY {name}.bin /{name}.bin\n{extra}"
    ctx = write_context(build_dir / name, dockerfile, {f"{name}.bin": blob(size, name)})
    return build(engine, ctx, tags)


def _try_buildkit(engine: Engine, build_dir: Path) -> tuple[str | None, bool, str]:
    ctx = write_context(
        build_dir / "bk",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY bk.bin /bk.bin\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && echo bk > /bk.txt"]\n'
        'CMD ["sh"]\n',
        {"bk.bin": blob(BK_BLOB, "bk")},
        with_busybox=True,
    )
    try:
        image_id = build(engine, ctx, (BK,), buildkit=True)
    except RuntimeError as exc:
        return None, False, f"BuildKit build failed: {str(exc)[-600:]}"
    if build_cache_count(engine) == 0:
        return image_id, False, "BuildKit built the image but /system/df has no BuildCache"
    return image_id, True, ""


class TransientDfError(OSError):
    """``/system/df`` failed on a snapshot BuildKit had just removed (see below)."""


def build_cache_count(engine: Engine) -> int:
    """Number of build cache records ``docker system df`` reports.

    Right after a BuildKit build the containerd image store may answer ``/system/df`` with
    "snapshot ...-view does not exist" (it lists a build snapshot while BuildKit removes it):
    asked again until it answers, for up to 10 s.
    """

    def ask() -> str:
        proc = engine.cli(
            "system", "df", "--format", "{{.Type}}\t{{.TotalCount}}", check=False
        )  # fmt: skip
        if proc.returncode != 0 and "does not exist" in proc.stderr:
            raise TransientDfError(proc.stderr.strip())
        if proc.returncode != 0:
            raise RuntimeError(f"docker system df failed: {proc.stderr.strip()}")
        return proc.stdout or "\n"

    out = wait_until(ask, 10.0, what="docker system df after a BuildKit build", interval=0.2)
    for line in out.splitlines():
        kind, _, count = line.partition("\t")
        if kind.strip() == "Build Cache":
            return int(count.strip() or 0)
    return 0


def build_scenario(engine: Engine, buildkit: bool = True) -> Scenario:
    """Create all images, containers and volumes (takes ~5 s); see module constants."""
    t0 = time.monotonic()
    build_dir = Path(tempfile.mkdtemp(prefix="build-", dir=engine.root))

    # -- images
    base_ctx = write_context(build_dir / "base", _BASE_DOCKERFILE, with_busybox=True)
    base = build(engine, base_ctx, (BASE,))
    app = _on_base(
        engine, build_dir, "app", APP_BLOB, ("inv-app:1", "inv-app:latest", "inv-alias:v1")
    )
    dangling = _on_base(engine, build_dir, "app2-old", APP2_OLD_BLOB, (APP2,))
    app2 = _on_base(engine, build_dir, "app2-new", APP2_BLOB, (APP2,))
    unused = _on_base(engine, build_dir, "unused", UNUSED_BLOB, (UNUSED,))
    health = _on_base(
        engine, build_dir, "health", HEALTH_BLOB, (HEALTH,),
        "HEALTHCHECK --interval=1s --timeout=3s CMD true\n",
    )  # fmt: skip
    outdated = _on_base(engine, build_dir, "moving-old", MOVING_OLD_BLOB, (MOVING,))

    # -- containers
    containers: dict[str, str] = {}
    containers[OUTDATED] = run_detached(engine, OUTDATED, MOVING)
    # rebuild: inv-outdated now runs an untagged (dangling) image
    moving = _on_base(engine, build_dir, "moving-new", MOVING_BLOB, (MOVING,))

    labels: list[str] = []
    for key, value in RUNNING_LABELS.items():
        labels += ["--label", f"{key}={value}"]
    containers[RUNNING] = run_detached(engine, RUNNING, APP, *labels, "-v", f"{VOL_USED}:/data")
    engine.cli("exec", RUNNING, "sh", "-c", f"head -c {VOL_USED_BYTES} /dev/zero > /data/f")
    # something in the container's writable layer, so SizeRw is not 0
    engine.cli("exec", RUNNING, "sh", "-c", f"head -c {RUNNING_RW_BYTES} /dev/zero > /rw.bin")

    containers[PAUSED] = run_detached(engine, PAUSED, APP)
    engine.cli("pause", PAUSED)

    for name, code in ((EXITED0, 0), (EXITED3, 3)):
        containers[name] = engine.cli(
            "run", "-d", "--name", name, APP, "sh", "-c", f"exit {code}"
        ).stdout.strip()
    containers[CREATED] = engine.cli("create", "--name", CREATED, APP, *LONG_SLEEP).stdout.strip()
    # the event stream's cases: a restart loop that ends, and an OOM kill
    containers[LOOPING] = engine.cli(
        "run", "-d", "--name", LOOPING, "--restart=on-failure:2", APP, "sh", "-c", "exit 2"
    ).stdout.strip()  # fmt: skip
    containers[OOM] = engine.cli(
        "run", "-d", "--name", OOM, "--memory=16m", "--memory-swap=16m", APP, "tail", "/dev/zero"
    ).stdout.strip()  # fmt: skip

    containers[HEALTHY] = run_detached(
        engine, HEALTHY, HEALTH, "--health-cmd", "true", "--health-interval", "1s"
    )
    containers[UNHEALTHY] = run_detached(
        engine, UNHEALTHY, APP,
        "--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1",
    )  # fmt: skip

    # -- volumes
    engine.cli("volume", "create", VOL_UNUSED)
    engine.cli(
        "run", "--name", "inv-throwaway", "-v", f"{VOL_UNUSED}:/data", BASE,
        "sh", "-c", f"head -c {VOL_UNUSED_BYTES} /dev/zero > /data/f",
    )  # fmt: skip
    engine.cli("rm", "inv-throwaway")

    # -- build cache (BuildKit), while the health checks settle
    if buildkit:
        bk_image, build_cache, note = _try_buildkit(engine, build_dir)
    else:
        bk_image, build_cache, note = None, False, "BuildKit not requested"

    for name in (EXITED0, EXITED3):
        engine.cli("wait", name)
    wait_loop_ended(engine, LOOPING, 2)
    wait_status(engine, OOM, "exited")
    wait_health(engine, HEALTHY, "healthy")
    wait_health(engine, UNHEALTHY, "unhealthy")
    wait_status(engine, PAUSED, "paused")

    return Scenario(
        base_image=base,
        app_image=app,
        app2_image=app2,
        dangling_image=dangling,
        moving_image=moving,
        outdated_image=outdated,
        unused_image=unused,
        health_image=health,
        bk_image=bk_image,
        build_cache=build_cache,
        build_cache_note=note,
        containers=containers,
        build_dir=build_dir,
        duration=time.monotonic() - t0,
    )
