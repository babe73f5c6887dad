"""Volumes, build cache and compose projects on the real dockerd 20.10 and 26.1.

Each figure is checked against what the docker CLI (or the engine's own prune) reports for
the same engine: volume sizes against 'docker system df -v', dangling volumes against
'docker volume ls -f dangling=true', idle build cache against what 'docker builder prune
--filter until=...' frees, projects against a 'docker-compose -p NAME up -d'.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import docker
import pytest

from exporter.records import parse_disk_usage, timestamp
from exporter.snapshot import build_cache_idle_bytes
from tests.harness import scenario as sc
from tests.harness.dockerd import Engine, dockerd_available, start_engine
from tests.support.env import clean_env, need
from tests.support.humanize import human_size
from tests.support.process import free_port
from tests.support.promql import Samples, series, value

pytestmark = pytest.mark.integration
FAST = ("--collect.interval", "1s", "--collect.disk-usage-interval", "1s")


def cli_json(engine: Engine, *args: str) -> list[dict[str, str]]:
    out = engine.cli(*args, "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def build_base(engine: Engine) -> None:
    """inv-base:1 (busybox FROM scratch, as the scenario builds it) on ``engine``."""
    ctx = sc.write_context(engine.root / "b" / "base", sc._BASE_DOCKERFILE, with_busybox=True)
    assert sc.build(engine, ctx, (sc.BASE,)).startswith("sha256:")


def test_volumes_match_docker_system_df_and_volume_ls(engine, scenario, run_exporter):
    exp = run_exporter("--docker.host", engine.unix_url, *FAST, env=clean_env())
    s = exp.wait_for(lambda s: value(s, "docker_volumes_dangling") is not None)

    df = json.loads(engine.cli("system", "df", "-v", "--format", "{{json .}}").stdout)
    cli_volumes = {v["Name"]: v for v in df["Volumes"]}
    exported = {x["volume"] for x in series(s, "docker_volume_size_bytes")}
    assert exported == set(cli_volumes) == {sc.VOL_USED, sc.VOL_UNUSED}
    for name, v in cli_volumes.items():
        size = value(s, "docker_volume_size_bytes", volume=name, driver=v["Driver"])
        assert size is not None and human_size(size) == v["Size"], name
        assert value(s, "docker_volume_containers", volume=name) == float(v["Links"]), name
    # the bytes the scenario wrote, exactly
    for name, written in ((sc.VOL_USED, sc.VOL_USED_BYTES), (sc.VOL_UNUSED, sc.VOL_UNUSED_BYTES)):
        assert value(s, "docker_volume_size_bytes", volume=name, driver="local") == written

    dangling = engine.cli("volume", "ls", "-q", "-f", "dangling=true").stdout.split()
    assert dangling == [sc.VOL_UNUSED]
    assert value(s, "docker_volumes_dangling") == len(dangling)
    assert value(s, "docker_volumes_dangling_bytes") == sc.VOL_UNUSED_BYTES

    for name in (sc.VOL_USED, sc.VOL_UNUSED):
        inspect = json.loads(engine.cli("volume", "inspect", name).stdout)[0]
        created = value(s, "docker_volume_created_timestamp_seconds", volume=name)
        assert created == timestamp(inspect["CreatedAt"]), inspect["CreatedAt"]
        assert created is not None and abs(created - time.time()) < 3600


def test_pruning_all_volumes_frees_the_dangling_bytes(fresh_engine, run_exporter):
    """docker volume prune --all removes exactly the volumes counted dangling."""
    engine = fresh_engine
    build_base(engine)
    for name, size in (("dangling-a", 3000), ("dangling-b", 40000), ("kept", 500)):
        engine.cli("run", "--name", f"w-{name}", "-v", f"{name}:/data", sc.BASE,
                   "sh", "-c", f"head -c {size} /dev/zero > /data/f")  # fmt: skip
    for name in ("dangling-a", "dangling-b"):
        engine.cli("rm", f"w-{name}")
    exp = run_exporter("--docker.host", engine.unix_url, *FAST, env=clean_env())
    s = exp.wait_for(lambda s: value(s, "docker_volumes_dangling") == 2)
    assert value(s, "docker_volumes_dangling_bytes") == 43000
    assert value(s, "docker_volume_containers", volume="kept") == 1

    api = docker.APIClient(base_url=engine.unix_url, version="auto")
    api_version = api.version()["ApiVersion"]
    # API 1.42 made prune skip named volumes unless all=true; before, it removed them all
    filters = {"all": ["true"]} if tuple(map(int, api_version.split("."))) >= (1, 42) else {}
    pruned = api.prune_volumes(filters=filters)
    assert sorted(pruned["VolumesDeleted"]) == ["dangling-a", "dangling-b"]
    assert pruned["SpaceReclaimed"] == 43000
    s = exp.wait_for(lambda s: value(s, "docker_volumes_dangling") == 0)
    assert value(s, "docker_volumes_dangling_bytes") == 0


BK_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY {name}.bin /{name}.bin
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && echo {name} > /{name}.txt"]
"""


def _bk_build(engine: Engine, name: str, size: int) -> None:
    ctx = sc.write_context(
        engine.root / "bk" / name,
        BK_DOCKERFILE.format(name=name),
        {f"{name}.bin": sc.blob(size, name)},
        with_busybox=True,
    )
    sc.build(engine, ctx, (f"bk-{name}:1",), buildkit=True)


def test_idle_build_cache_equals_what_builder_prune_until_frees(fresh_engine, run_exporter):
    """Two BuildKit builds some seconds apart; 'until' between them: the exporter's rule
    (build_cache_idle_bytes on the engine's own /system/df) gives what the prune frees."""
    engine = fresh_engine
    _bk_build(engine, "old", 30000)
    time.sleep(4)
    _bk_build(engine, "new", 70000)
    api = docker.APIClient(base_url=engine.unix_url, version="auto")

    exp = run_exporter("--docker.host", engine.unix_url, *FAST, env=clean_env())
    s = exp.wait_for(
        lambda s: value(s, "docker_build_cache_idle_bytes", idle_for="24h") is not None
    )
    # just built: nothing is a day idle; in use + unused is 'docker system df's SIZE
    assert value(s, "docker_build_cache_idle_bytes", idle_for="24h") == 0
    assert value(s, "docker_build_cache_idle_bytes", idle_for="168h") == 0
    rows = {r["Type"]: r for r in cli_json(engine, "system", "df")}
    in_use = value(s, "docker_build_cache_bytes", state="in_use")
    unused = value(s, "docker_build_cache_bytes", state="unused")
    assert in_use is not None and unused is not None
    assert human_size(in_use + unused) == rows["Build Cache"]["Size"]
    exp.stop()

    records = parse_disk_usage(api.df()).build_cache
    assert records, "BuildKit left no build cache records"
    # 'until' in the middle of the widest gap between last uses: between the two builds
    uses = sorted({r.last_used for r in records if r.last_used is not None})
    gap, before = max((b - a, a) for a, b in zip(uses, uses[1:]))
    assert gap >= 2, f"no pause between the builds' last uses: {uses}"
    now = time.time()
    idle_for = round(now - (before + gap / 2))
    expected = build_cache_idle_bytes(records, now, idle_for)
    everything = build_cache_idle_bytes(records, now, 0.001)
    pruned = api.prune_builds(filters={"until": [f"{idle_for}s"]})
    freed = pruned.get("SpaceReclaimed", 0)
    assert freed == expected, (idle_for, pruned, records)
    assert 0 < expected < everything, "the cut did not fall between the two builds"
    left = parse_disk_usage(api.df()).build_cache or ()
    assert build_cache_idle_bytes(left, time.time(), 0.001) == everything - expected


COMPOSE_FILE = """\
services:
  web:
    image: {image}
    command: ["sleep", "100000"]
    init: true
    volumes: ["data:/data"]
  worker:
    image: {image}
    command: ["sleep", "100000"]
    init: true
volumes:
  data: {{}}
"""


def _compose(engine: Engine, directory: Path, *args: str) -> None:
    binary = "/usr/bin/docker-compose"
    if not os.access(binary, os.X_OK):
        need("docker-compose (Debian package docker-compose) not installed")
    proc = subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        env=engine.cli_env({"DOCKER_HOST": engine.unix_url}),
        cwd=directory,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"docker-compose {' '.join(args)}:\n{proc.stderr}"


def test_compose_project_containers_volume_and_rw_bytes(fresh_engine, run_exporter, tmp_path):
    engine = fresh_engine
    build_base(engine)
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(image=sc.BASE))
    project = "invproj"
    _compose(engine, tmp_path, "-p", project, "up", "-d")
    web = f"{project}_web_1"
    names = engine.cli("ps", "--format", "{{.Names}}").stdout.split()
    if web not in names:  # compose v2 names with dashes
        web = f"{project}-web-1"
    engine.cli("exec", web, "sh", "-c", "head -c 12345 /dev/zero > /data/f")
    engine.cli("exec", web, "sh", "-c", "head -c 4096 /dev/zero > /rw.bin")
    exp = run_exporter(
        "--docker.host", engine.unix_url, *FAST,
        "--collect.container-sizes-interval", "1s", "--no-collect.per-container",
        env=clean_env(),
    )  # fmt: skip
    s = exp.wait_for(
        lambda s: (
            value(s, "docker_project_containers", project=project, state="running") == 2
            and value(s, "docker_project_volume_bytes", project=project) == 12345
            and value(s, "docker_project_rw_bytes", project=project) is not None
        )
    )
    for state in ("created", "restarting", "removing", "paused", "exited", "dead"):
        assert value(s, "docker_project_containers", project=project, state=state) == 0, state
    assert series(s, "docker_container_state") == []  # per-container series are off
    label = f"label=com.docker.compose.project={project}"
    sizes = cli_json(engine, "ps", "-a", "-s", "--filter", label)
    assert len(sizes) == 2
    rw = value(s, "docker_project_rw_bytes", project=project)
    # 'docker ps -s' prints SizeRw with 3 significant digits, e.g. "4.1kB (virtual 1.99MB)"
    cli_rw = sum(_bytes(x["Size"].split(" ")[0]) for x in sizes)
    assert rw is not None and abs(rw - cli_rw) <= 0.01 * cli_rw + 1, (rw, sizes)
    assert rw >= 4096

    engine.cli("stop", web)
    s = exp.wait_for(
        lambda s: value(s, "docker_project_containers", project=project, state="exited") == 1
    )
    assert value(s, "docker_project_containers", project=project, state="running") == 1
    _compose(engine, tmp_path, "-p", project, "down", "--volumes")
    exp.wait_for(lambda s: not series(s, "docker_project_containers"))


def _bytes(text: str) -> float:
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in ("kB", "MB", "GB", "B"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


# --------------------------------------------------------------------------- Swarm

OFFLINE_ENV = {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}  # tasks use local images only


def _service_ls(engine: Engine) -> dict[str, str]:
    """name -> REPLICAS as 'docker service ls' prints it ('running/desired')."""
    return {r["Name"]: r["Replicas"] for r in cli_json(engine, "service", "ls")}


def _replicas(s: Samples, service: str) -> str:
    """The exporter's figures as 'docker service ls' prints them: 'running/desired'."""
    running = value(s, "docker_swarm_service_tasks", service=service, state="running")
    desired = [
        value(s, "docker_swarm_service_replicas_desired", **x)
        for x in series(s, "docker_swarm_service_replicas_desired")
        if x["service"] == service
    ]
    if running is None or len(desired) != 1 or desired[0] is None:
        return f"no figures ({running}, {desired})"
    return f"{int(running)}/{int(desired[0])}"


def _tasks(s: Samples, service: str, state: str) -> float:
    return value(s, "docker_swarm_service_tasks", service=service, state=state) or 0.0


def test_swarm_services_desired_and_running(engine_build, run_exporter):
    """A private engine of the test's own: before 'swarm init' no Swarm series; after it, a
    replicated service of 2 and a global one, then scaled to 3, then one task killed."""
    need(dockerd_available(engine_build))
    engine = start_engine(daemon_env=OFFLINE_ENV, build=engine_build)
    try:
        build_base(engine)
        flags = (
            *("--docker.host", engine.unix_url, "--collect.interval", "1s"),
            *("--collect.swarm-interval", "1s", "--collect.disk-usage-interval", "0"),
        )
        before = run_exporter(*flags, env=clean_env())
        s = before.wait_for(
            lambda s: value(s, "docker_exporter_collection_success", collector="swarm") == 1
        )
        assert [name for name, _ in s if name.startswith("docker_swarm_")] == []
        before.stop()

        engine.cli("swarm", "init", "--advertise-addr", "127.0.0.1",
                   "--listen-addr", f"127.0.0.1:{free_port()}")  # fmt: skip
        sleep = (sc.BASE, "sleep", "100000")
        common = ("service", "create", "--detach", "--no-resolve-image", "--init")
        engine.cli(*common, "--name", "rep", "--replicas", "2", *sleep)
        engine.cli(*common, "--name", "glob", "--mode", "global", *sleep)
        exp = run_exporter(*flags, env=clean_env())

        def as_cli(s: Samples, rep: str, glob: str) -> bool:
            cli = _service_ls(engine)
            mine = {"rep": _replicas(s, "rep"), "glob": _replicas(s, "glob")}
            return mine == {"rep": rep, "glob": glob} == {k: cli.get(k) for k in mine}

        s = exp.wait_for(lambda s: as_cli(s, "2/2", "1/1"), timeout=90)
        desired = "docker_swarm_service_replicas_desired"
        assert value(s, desired, service="rep", mode="replicated") == 2
        assert value(s, desired, service="glob", mode="global") == 1

        engine.cli("service", "scale", "--detach", "rep=3")
        s = exp.wait_for(lambda s: as_cli(s, "3/3", "1/1"), timeout=90)
        assert value(s, desired, service="rep", mode="replicated") == 3

        label = "label=com.docker.swarm.service.name=rep"
        victim = engine.cli("ps", "-q", "--filter", label).stdout.split()[0]
        engine.cli("kill", victim)
        s = exp.wait_for(
            lambda s: _tasks(s, "rep", "failed") >= 1 and as_cli(s, "3/3", "1/1"), timeout=90
        )
        ps = engine.cli("service", "ps", "rep", "--format", "{{.CurrentState}}").stdout
        states = [line.split()[0].lower() for line in ps.splitlines() if line.strip()]
        assert _tasks(s, "rep", "failed") == states.count("failed") == 1
        assert _tasks(s, "rep", "running") == states.count("running") == 3
        exp.stop()
    finally:
        engine.close()


# --------------------------------------------------------------------------- Podman


def test_podman_volumes_and_no_swarm(podman_build, run_exporter):
    """Podman 4.3's /system/df lists volumes with their size and RefCount, but with an empty
    Driver, no CreatedAt and no Labels (a labelled volume loses its project); it has no
    Swarm (/info: LocalNodeState inactive), so the swarm job asks nothing."""
    from tests.harness.podman import ULIMITS, start_podman

    pod = start_podman(build=podman_build)
    try:
        ctx = sc.write_context(pod.root / "b", sc._BASE_DOCKERFILE, with_busybox=True)
        pod.cli("build", "--network", "none", "-t", sc.BASE, str(ctx))
        pod.cli("volume", "create", "--label", "com.docker.compose.project=pp", "pv-dangling")
        pod.cli("run", *ULIMITS, "--rm", "-v", "pv-dangling:/data", sc.BASE,
                "sh", "-c", "head -c 20480 /dev/zero > /data/f")  # fmt: skip
        pod.cli("run", "-d", *ULIMITS, "--name", "pv-user", "-v", "pv-used:/data", sc.BASE,
                "sleep", "100000")  # fmt: skip
        pod.cli("exec", "pv-user", "sh", "-c", "head -c 51200 /dev/zero > /data/f")
        exp = run_exporter(
            "--docker.host", pod.unix_url, *FAST, "--collect.swarm-interval", "1s",
            env=clean_env(),
        )  # fmt: skip
        s = exp.wait_for(lambda s: value(s, "docker_volumes_dangling") is not None)
        dangling = pod.cli("volume", "ls", "-q", "-f", "dangling=true").stdout.split()
        assert dangling == ["pv-dangling"]
        assert value(s, "docker_volumes_dangling") == 1
        assert value(s, "docker_volumes_dangling_bytes") == 20480
        assert value(s, "docker_volume_size_bytes", volume="pv-used", driver="") == 51200
        assert value(s, "docker_volume_size_bytes", volume="pv-dangling", driver="") == 20480
        assert value(s, "docker_volume_containers", volume="pv-used") == 1
        assert series(s, "docker_volume_created_timestamp_seconds") == []
        assert series(s, "docker_project_volume_bytes") == []  # the label is not in the df
        for state in ("in_use", "unused", "shared"):  # Podman's BuildCache is []
            assert value(s, "docker_build_cache_bytes", state=state) == 0
        assert value(s, "docker_build_cache_idle_bytes", idle_for="24h") == 0
        s = exp.wait_for(
            lambda s: value(s, "docker_exporter_collection_success", collector="swarm") == 1
        )
        assert [name for name, _ in s if name.startswith("docker_swarm_")] == []
    finally:
        pod.close()
