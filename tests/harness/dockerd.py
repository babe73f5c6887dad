"""A private, throw-away Docker engine for integration tests.

``start_engine()`` generates a CA plus server/client certificates, then runs ``dockerd``
with its own data root, exec root, pidfile and config file (nothing on the host is shared
with it), listening on a unix socket and on a TLS-verified loopback TCP port.

Everything lives in one temp dir (short path: unix sockets are limited to 108 bytes);
``Engine.close()`` stops the daemon, kills anything still running from that dir,
unmounts what the daemon left mounted there and removes the dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.certs import generate_certs
from tests.support.env import clean_env
from tests.support.process import dies_with_the_suite, free_port, log_tail
from tests.support.wait import wait_until

# Whichever engine is installed: Debian's docker.io (/usr/sbin) or Docker CE (/usr/bin).
DOCKERD = shutil.which("dockerd", path="/usr/sbin:/usr/bin") or "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"  # the 20.10 client; /usr/local/bin/docker is a different one
OPENSSL = "openssl"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float | None = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command in text mode, capture output; on failure raise with its stderr."""
    proc = subprocess.run(
        list(args),
        input=input,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {proc.returncode}): {' '.join(args)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


# --------------------------------------------------------------------------- processes/mounts


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first)."""
    prefix = str(root.resolve())
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        target = parts[4].encode().decode("unicode_escape")  # \040 etc.
        if target == prefix or target.startswith(prefix + "/"):
            found.append(target)
    # deepest first; duplicates (stacked mounts) are kept so each layer gets unmounted
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below ``root`` (lazily if busy)."""
    for _ in range(5):
        targets = _mounts_under(root)
        if not targets:
            return
        for target in targets:
            r = run(["umount", target], check=False, timeout=30)
            if r.returncode != 0:
                run(["umount", "-l", target], check=False, timeout=30)


# Only engine processes are ours to kill: a client of the engine (the exporter under test,
# a docker CLI) also names the root in its command line and must survive an engine stop.
ENGINE_PROGRAMS = frozenset(
    {
        "dockerd",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "runc",
        "docker-init",
        "docker-proxy",
        "podman",
        "conmon",
        "catatonit",
    }
)


def _pids_referencing(root: Path) -> list[int]:
    """Engine PIDs whose command line mentions ``root`` (dockerd, its containerd and shims)."""
    needle = str(root.resolve()).encode()
    pids: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        program = os.path.basename(cmdline.split(b"\0", 1)[0].decode(errors="replace"))
        if needle in cmdline and program in ENGINE_PROGRAMS:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists": reap it if it is ours
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().split(") ", 1)[1][:1] != "Z"
        except (OSError, IndexError):
            return False
    return waited == 0


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not any(_alive(p) for p in pids), timeout, interval=0.05)
    return [p for p in pids if _alive(p)]


def remove_root(root: Path) -> None:
    """Last step of an engine's close: its leftover processes, mounts and files go."""
    kill_processes_under(root)
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def kill_processes_under(root: Path, timeout: float = 5.0) -> None:
    """SIGTERM then SIGKILL every process whose command line refers to ``root``."""
    pids = _pids_referencing(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        pids = _wait_gone(pids, timeout)
        if not pids:
            return


def kill_cgroup_members(ids: Sequence[str]) -> None:
    """SIGKILL every process whose cgroup path mentions one of ``ids`` (container ids).

    Catches container processes orphaned when their shim/conmon was killed (thawing
    paused ones), then removes their emptied cgroup directories.
    """
    wanted = [i for i in ids if len(i) >= 12]
    if not wanted:
        return
    victims: list[int] = []
    cgroup_dirs: set[Path] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(cid in cgroup for cid in wanted):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
            victims.append(int(entry.name))
            cgroup_dirs.update(_thaw(cgroup))  # a paused container only dies once thawed
    if victims:
        _wait_gone(victims, 5.0)
        for d in sorted(cgroup_dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()


def _thaw(proc_cgroup: str) -> set[Path]:
    """Unfreeze the cgroups listed in a /proc/PID/cgroup text (v1 freezer and v2).

    Returns the cgroup directories (all hierarchies) of that process.
    """
    dirs: set[Path] = set()
    for line in proc_cgroup.splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.lstrip("/")
        if not path:
            continue
        if controllers == "":
            mounts = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]
            knob, value = "cgroup.freeze", "0"
        else:
            name = controllers.split(",")[0].removeprefix("name=")
            mounts = [Path("/sys/fs/cgroup", name)]
            knob, value = "freezer.state", "THAWED"
        for mount in mounts:
            d = mount / path
            if not d.is_dir():
                continue
            dirs.add(d)
            with contextlib.suppress(OSError):
                if (d / knob).exists():
                    (d / knob).write_text(value)
    return dirs


def ping_unix(sock_path: Path, timeout: float = 2.0) -> bool:
    try:
        return ping_answer(sock_path, timeout) == "OK"
    except OSError:
        return False


def _pinged(sock_path: Path) -> bool:
    """True once /_ping answers OK; else an OSError that says what happened (for the wait)."""
    answer = ping_answer(sock_path)
    if answer != "OK":
        raise OSError(answer)
    return True


def ping_answer(sock_path: Path, timeout: float = 2.0) -> str:
    """``OK`` when the engine answers /_ping on ``sock_path``, else what it answered (the
    waits show it); an OSError (no socket yet, refused) is raised as it is."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] and body == b"OK"
    return "OK" if ok else f"answered {data[:200]!r}"


# --------------------------------------------------------------------------- the engine


class ApiDaemon:
    """What dockerd and the Podman service share: a daemon serving the Engine API on a unix
    socket under ``root``, its output in ``log_path``, started with ``_launch``."""

    root: Path
    unix_socket: Path
    _proc: subprocess.Popen[bytes] | None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        raise NotImplementedError

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def _launch(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> None:
        """Start ``argv`` (dying with the test process) and wait until ``/_ping`` answers on
        the socket; a daemon that does not answer in ``timeout`` is stopped and reported."""
        with contextlib.suppress(FileNotFoundError):
            self.unix_socket.unlink()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                dies_with_the_suite(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.root,
                start_new_session=True,
            )
        proc = self._proc
        try:
            # the last answer (an OSError such as "No such file", or what it answered) and the
            # daemon's log tail say why a start gave up
            wait_until(
                lambda: _pinged(self.unix_socket),
                timeout,
                what=f"{Path(argv[0]).name} answering /_ping on {self.unix_socket}",
                alive=lambda: proc.poll() is None,
                diagnostics=lambda: f"exit status {proc.poll()}; log tail:\n{self.log_tail()}",
            )
        except AssertionError:
            self.stop()
            raise


@dataclass(frozen=True)
class EngineBuild:
    """Which dockerd to run: its version (the test id), its binary, and the directories put
    first on its PATH (where its own containerd, shims and docker-proxy are); the docker CLI
    that drives it (and that CLI's plugins: buildx); ``containerd_store``: with the
    containerd image store (``features.containerd-snapshotter`` in its config file)."""

    version: str
    dockerd: Path
    path_dirs: tuple[Path, ...] = ()
    cli: Path = Path(DOCKER_CLI)
    cli_plugins: Path | None = None
    containerd_store: bool = False

    def daemon_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = clean_env(extra)
        env["PATH"] = ":".join([*map(str, self.path_dirs), env["PATH"]])
        return env


SYSTEM_DOCKER = EngineBuild("20.10", Path(DOCKERD))  # Debian 12's docker.io


@dataclass
class Engine(ApiDaemon):
    root: Path
    unix_socket: Path
    tcp_port: int
    certs: Path
    wrong_ca: Path
    daemon_env: Mapping[str, str] = field(default_factory=dict)  # added to dockerd's env
    build: EngineBuild = SYSTEM_DOCKER
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    # ---- layout
    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def config_file(self) -> Path:
        return self.root / "daemon.json"

    @property
    def cli_config(self) -> Path:
        """DOCKER_CONFIG for the CLI (keeps ~/.docker/config.json and contexts out)."""
        return self.root / "cli-config"

    @property
    def tls_cli_args(self) -> list[str]:
        """``docker`` CLI flags to talk to the TLS port with the valid client cert."""
        return [
            "--tlsverify",
            "--tlscacert",
            str(self.certs / "ca.pem"),
            "--tlscert",
            str(self.certs / "cert.pem"),
            "--tlskey",
            str(self.certs / "key.pem"),
            "-H",
            self.tcp_url,
        ]

    # ---- CLI
    def cli_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = clean_env({"DOCKER_CONFIG": str(self.cli_config)})
        if extra:
            env.update(extra)
        return env

    def cli(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float | None = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """``docker -H unix://... ARGS`` with the build's CLI (text mode, output captured)."""
        return run(
            [str(self.build.cli), "-H", self.unix_url, *args],
            check=check,
            env=self.cli_env(env),
            input=input,
            cwd=cwd,
            timeout=timeout,
        )

    def inspect(self, *refs: str, kind: str | None = None) -> list[dict[str, object]]:
        """``docker inspect`` parsed (``kind``: container/image/volume...)."""
        args = ["inspect"] + (["--type", kind] if kind else []) + list(refs)
        data: list[dict[str, object]] = json.loads(self.cli(*args).stdout)
        return data

    # ---- daemon lifecycle
    def daemon_args(self) -> list[str]:
        return [
            str(self.build.dockerd),
            "--config-file", str(self.config_file),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            # the containerd store names containerd's snapshotter: "overlay2" is not one
            "--storage-driver", "overlayfs" if self.build.containerd_store else "overlay2",
            "--shutdown-timeout", "2",  # busybox sleeps ignore SIGTERM: no 15 s wait on stop
            "-H", self.unix_url,
            "-H", self.tcp_url,
            "--tlsverify",
            "--tlscacert", str(self.certs / "ca.pem"),
            "--tlscert", str(self.certs / "server-cert.pem"),
            "--tlskey", str(self.certs / "server-key.pem"),
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart after ``stop()``) dockerd; wait until ``/_ping`` answers."""
        if self.running:
            return
        self.cli_config.mkdir(parents=True, exist_ok=True)
        plugins = self.build.cli_plugins
        if plugins is not None and plugins.is_dir():  # found in $DOCKER_CONFIG/cli-plugins
            own = self.cli_config / "cli-plugins"
            own.mkdir(exist_ok=True)
            for plugin in plugins.iterdir():
                with contextlib.suppress(FileExistsError):
                    (own / plugin.name).symlink_to(plugin)
        self._launch(self.daemon_args(), self.build.daemon_env(self.daemon_env), timeout)

    def _daemon_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM dockerd (pid from the pidfile), wait for it; SIGKILL after ``timeout``.

        Note: without live-restore the daemon stops running containers on shutdown, so
        after a restart they are "exited".
        """
        pid = self._daemon_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if self._proc is not None and self._proc.pid == pid:
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            elif _wait_gone([pid], timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone([pid], 10)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(1)
        self._proc = None
        # a killed daemon can leave its containerd / shims / containers behind
        kill_processes_under(self.root)
        kill_cgroup_members(self.container_ids_on_disk())

    def container_ids_on_disk(self) -> list[str]:
        """Ids of all containers in the data root (works while the daemon is down)."""
        try:
            return [d.name for d in (self.data_root / "containers").iterdir() if d.is_dir()]
        except OSError:
            return []

    def close(self) -> None:
        """Stop the daemon, clean up processes and mounts, delete ``root``."""
        try:
            self.stop()
        finally:
            remove_root(self.root)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dockerd_available(build: EngineBuild = SYSTEM_DOCKER) -> str | None:
    """``None`` if a private dockerd of ``build`` can be run here, else a one-line reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "dockerd needs root (not running as uid 0)"
    for binary in (str(build.dockerd), str(build.cli)):
        if not os.access(binary, os.X_OK):
            return f"{binary} not found or not executable"
    path = build.daemon_env({})["PATH"]
    for tool in (OPENSSL, "containerd", "runc"):
        if shutil.which(tool, path=path) is None:
            return f"{tool} not found on PATH"
    if not os.access("/bin/busybox", os.X_OK):
        return "/bin/busybox (busybox-static) not found; test images are built from it"
    return None


def daemon_config(root: Path, build: EngineBuild) -> dict[str, object]:
    """dockerd's config file: the trust key kept out of /etc/docker (the default place), and
    the containerd image store when the build asks for it."""
    config: dict[str, object] = {"deprecated-key-path": str(root / "key.json")}
    if build.containerd_store:
        config["features"] = {"containerd-snapshotter": True}
    return config


def start_engine(
    base: Path | None = None,
    daemon_env: Mapping[str, str] | None = None,
    build: EngineBuild = SYSTEM_DOCKER,
) -> Engine:
    """Create a temp dir (under ``base`` or /tmp), certificates, and start dockerd.

    ``daemon_env`` adds variables to dockerd's otherwise scrubbed environment.
    """
    reason = dockerd_available(build)
    if reason is not None:
        raise RuntimeError(f"cannot start dockerd {build.version}: {reason}")
    root = Path(tempfile.mkdtemp(prefix="inv-", dir=str(base) if base else "/tmp")).resolve()
    engine: Engine | None = None
    try:
        sock = root / "docker.sock"
        if len(str(sock)) > 100:
            raise RuntimeError(f"socket path too long for AF_UNIX: {sock}")
        certs, wrong_ca = generate_certs(root / "tls")
        engine = Engine(
            root=root,
            unix_socket=sock,
            tcp_port=free_port(),
            certs=certs,
            wrong_ca=wrong_ca,
            daemon_env=dict(daemon_env or {}),
            build=build,
        )
        engine.config_file.write_text(json.dumps(daemon_config(root, build), indent=2) + "\n")
        engine.start()
    except BaseException:
        if engine is not None:
            engine.close()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return engine


@contextlib.contextmanager
def engine_context(
    base: Path | None = None, build: EngineBuild = SYSTEM_DOCKER
) -> Iterator[Engine]:
    engine = start_engine(base, build=build)
    try:
        yield engine
    finally:
        engine.close()
