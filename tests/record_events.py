"""Record what each engine sends on /events: ``python -m tests.record_events``.

Starts a private dockerd of each version the engine tests run and a private podman
service, subscribes to ``/events`` unfiltered, then plays the scenes the exporter counts:
a ``--restart=on-failure:2`` loop of a command exiting 2, a ``--memory=16m`` container
outgrowing its limit (32m on Podman: 5.8 needs it), a container with a 1 s healthcheck,
``docker restart``,
``docker rm -f``, a tag and an untag. The raw lines go to
``tests/fixtures/<engine>/events.jsonl`` as the engine sent them, and what inspect said
afterwards to ``events.json`` (the loop's RestartCount, the OOM kill, the ids).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker

from tests.harness import debian_docker
from tests.harness import scenario as sc
from tests.harness.dockerd import dockerd_available, start_engine
from tests.harness.podman import VERSIONS as PODMAN_VERSIONS
from tests.harness.podman import build_unavailable, podman_build, start_podman
from tests.support.paths import FIXTURES
from tests.support.wait import wait_until

IMAGE = "evt:1"


class Recorder:
    """Reads /events unfiltered in a thread, keeping each line as sent."""

    def __init__(self, unix_url: str) -> None:
        self.client = docker.APIClient(base_url=unix_url, version="auto", timeout=None)
        self.lines: list[bytes] = []
        self.stream: Any = self.client.events(decode=False)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            for chunk in self.stream:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self.lines.append(line)
        except Exception:  # closed by stop()
            pass

    def stop(self) -> list[bytes]:
        time.sleep(2)
        self.stream.close()
        self.thread.join(5)
        return self.lines


def play(cli: Any, inspect: Any, root: Path, build: Any, memory: str = "16m") -> dict[str, object]:
    """The scenes; ``cli(*args)`` runs the engine's CLI, ``inspect(name)`` its inspect."""
    ctx = root / "evt"
    sc.write_context(
        ctx,
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["sh"]\n',
    )
    shutil.copy(sc.BUSYBOX, ctx / "busybox")
    build(ctx)
    meta: dict[str, object] = {}
    cli("run", "-d", "--name", "loop", "--restart=on-failure:2", IMAGE, "sh", "-c", "exit 2")

    def ended() -> bool:
        st = inspect("loop")
        return bool(st["State"]["Status"] == "exited" and st["RestartCount"] == 2)

    wait_until(ended, 120, what="the restart loop")
    meta["loop"] = {"id": inspect("loop")["Id"], "restart_count": inspect("loop")["RestartCount"]}
    cli(
        "run", "-d", "--name", "hog", f"--memory={memory}", f"--memory-swap={memory}",
        IMAGE, "tail", "/dev/zero",
    )  # fmt: skip
    wait_until(lambda: inspect("hog")["State"]["Status"] == "exited", 60, what="the OOM kill")
    hog = inspect("hog")
    meta["hog"] = {
        "id": hog["Id"],
        "oom_killed": hog["State"]["OOMKilled"],
        "exit_code": hog["State"]["ExitCode"],
    }
    cli(
        "run", "-d", "--name", "checked", "--health-cmd", "true", "--health-interval", "1s",
        IMAGE, "sleep", "100000",
    )  # fmt: skip
    time.sleep(3.5)
    cli("restart", "-t", "1", "checked")
    cli("rm", "-f", "checked")
    cli("tag", IMAGE, "evt:2")
    cli("rmi", "evt:2")
    return meta


def write(out: Path, lines: list[bytes], meta: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (out / "events.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{out}: {len(lines)} events", file=sys.stderr)


def record_docker(version: str, out: Path) -> None:
    build = debian_docker.build_for(version)
    reason = dockerd_available(build)
    if reason:
        raise SystemExit(f"docker {version}: cannot record: {reason}")
    engine = start_engine(build=build)
    try:
        recorder = Recorder(engine.unix_url)
        meta = play(
            engine.cli,
            lambda name: engine.inspect(name, kind="container")[0],
            engine.root,
            lambda ctx: engine.cli(
                "build", "-q", "-t", IMAGE, str(ctx), env={"DOCKER_BUILDKIT": "0"}
            ),
        )
        write(out, recorder.stop(), meta)
    finally:
        engine.close()


def record_podman(out: Path, version: str) -> None:
    reason = build_unavailable(version)
    if reason:
        raise SystemExit(f"podman {version}: cannot record: {reason}")
    pod = start_podman(build=podman_build(version))
    try:
        recorder = Recorder(pod.unix_url)
        meta = play(
            pod.cli,
            lambda name: pod.inspect(name)[0],
            pod.root,
            lambda ctx: pod.cli("build", "--network", "none", "-q", "-t", IMAGE, str(ctx)),
            memory="32m",
        )
        write(out, recorder.stop(), meta)
    finally:
        pod.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=FIXTURES, help="fixtures directory")
    parser.add_argument(
        "--docker",
        action="append",
        choices=debian_docker.ENGINE_VERSIONS,
        help="record only this dockerd version (repeatable; default: all)",
    )
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument(
        "--podman", action="append", choices=PODMAN_VERSIONS, help="only this podman version"
    )
    args = parser.parse_args(argv)
    for version in () if args.no_docker else args.docker or debian_docker.ENGINE_VERSIONS:
        record_docker(version, args.out / f"docker-{version}")
    for version in [] if args.no_podman else args.podman or PODMAN_VERSIONS:
        record_podman(args.out / f"podman-{version}", version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
