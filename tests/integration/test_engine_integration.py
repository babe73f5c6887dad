"""The real exporter process against the real dockerd (and Podman) started by the suite.

Every figure is checked against what the docker CLI itself reports for the same engine.
Read-only checks share the session engine; tests that change the engine's state (remove,
prune, restart) get an engine of their own, which starts in about a second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import docker
import pytest

from tests.harness import scenario as sc
from tests.harness.dockerd import Engine
from tests.harness.podman import Podman
from tests.support.env import clean_env
from tests.support.humanize import human_size
from tests.support.logs import messages
from tests.support.prometheus import run_promtool
from tests.support.promql import Samples, series, value

pytestmark = pytest.mark.integration
FAST = ("--collect.interval", "1s", "--collect.timeout", "900ms")
LABELS = ("--collect.container-labels", "com.docker.compose.project,weird")
PROXY_CA = {
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
}


def exporter_env(**extra: str) -> dict[str, str]:
    """A clean environment with the proxy CA variables set, as on this machine and many
    users': they must not replace the engine's CA."""
    return clean_env({**PROXY_CA, **extra})


def tcp_flags(engine: Engine, *, client: Path | None, ca: bool = True) -> list[str]:
    """Flags for the engine's TLS port: the engine's CA (unless ``ca`` is false) and the
    client certificate and key in the directory ``client`` (none when ``None``)."""
    flags = ["--docker.host", engine.tcp_url]
    if ca:
        flags += ["--docker.tls-ca", str(engine.certs / "ca.pem")]
    if client is not None:
        flags += ["--docker.tls-cert", str(client / "cert.pem")]
        flags += ["--docker.tls-key", str(client / "key.pem")]
    return flags


def cli_lines(engine: Engine, *args: str) -> list[str]:
    return [ln for ln in engine.cli(*args).stdout.splitlines() if ln.strip()]


def test_unix_socket_inventory_matches_the_cli(engine, scenario, run_exporter):
    exp = run_exporter("--docker.host", engine.unix_url, *FAST, *LABELS, env=exporter_env())
    s = exp.wait_for(lambda s: value(s, "docker_up") == 1.0)

    ids = set(cli_lines(engine, "images", "-q", "--no-trunc"))
    assert value(s, "docker_images") == len(ids) == 9
    dangling = set(cli_lines(engine, "images", "-q", "--no-trunc", "-f", "dangling=true"))
    assert value(s, "docker_images_dangling") == len(dangling) == 2

    ps = [
        json.loads(x) for x in cli_lines(engine, "ps", "-a", "--no-trunc", "--format", "{{json .}}")
    ]
    states = Counter(p["State"] for p in ps)
    for state in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
        assert value(s, "docker_containers", state=state) == states.get(state, 0), state
    for p in ps:
        name = p["Names"]
        assert value(s, "docker_container_state", name=name, state=p["State"]) == 1.0
        code = re.match(r"Exited \((\d+)\)", p["Status"])
        assert value(s, "docker_container_exit_code", name=name) == (
            float(code.group(1)) if code else None
        )
        health = re.search(r"\((healthy|unhealthy|health: starting)\)", p["Status"])
        labels = [x for x in series(s, "docker_container_health_status") if x["name"] == name]
        assert [x["status"] for x in labels] == ([health.group(1)] if health else [])
        info = [x for x in series(s, "docker_container_info") if x["name"] == name]
        assert len(info) == 1 and info[0]["container_id"] == p["ID"][:12]
        assert info[0]["image"] == p["Image"]

    # docker images: every tag, and unused = no container of any state
    tags = cli_lines(engine, "images", "--no-trunc", "--format", "{{.Repository}} {{.Tag}} {{.ID}}")
    want = {(t.split()[2][7:19], t.split()[0], t.split()[1]) for t in tags if "<none>" not in t}
    got = {(x["image_id"], x["repository"], x["tag"]) for x in series(s, "docker_image_tag_info")}
    assert got == want
    by_id = {
        i: sum(
            1 for p in ps if engine.cli("inspect", "-f", "{{.Image}}", p["ID"]).stdout.strip() == i
        )
        for i in ids
    }
    assert value(s, "docker_images_unused") == sum(1 for n in by_id.values() if n == 0) == 6
    app = scenario.app_image[7:19]
    # 8: with inv-looping and inv-oom, the event stream's cases
    assert value(s, "docker_image_containers", image_id=app, name="inv-alias:v1") == 8.0
    assert value(s, "docker_container_image_outdated", name=sc.OUTDATED) == 1.0
    assert value(s, "docker_container_image_outdated", name=sc.RUNNING) == 0.0
    assert value(s, "docker_container_health_status", name=sc.UNHEALTHY, status="unhealthy") == 1
    # the label with a quote, a backslash, a newline and non-ASCII came through intact
    assert (
        value(
            s,
            "docker_container_labels",
            name=sc.RUNNING,
            label_com_docker_compose_project="demo",
            label_weird=sc.WEIRD_LABEL,
        )
        == 1.0
    )

    result = run_promtool("check", "metrics", input=exp.metrics_text().encode())
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


def test_mutual_tls_from_environment_with_proxy_ca_variables_set(engine, scenario, run_exporter):
    env = exporter_env(
        DOCKER_HOST=engine.tcp_url, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(engine.certs)
    )
    exp = run_exporter(*FAST, env=env)
    s = exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    assert value(s, "docker_images") == 9
    assert "without server verification" not in exp.log()


def test_mutual_tls_by_flags(engine, scenario, run_exporter):
    exp = run_exporter(*tcp_flags(engine, client=engine.certs), *FAST, env=exporter_env())
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0)


def test_client_cert_without_verification_warns(engine, scenario, run_exporter):
    exp = run_exporter(
        *tcp_flags(engine, client=engine.certs, ca=False),
        "--no-docker.tls-verify",
        *FAST,
        env=exporter_env(),
    )
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    assert exp.log().count("TLS without server verification") == 1


def failing_log(exp, needle: str) -> str:
    exp.wait_for(
        lambda s: (
            (value(s, "docker_exporter_collection_errors_total", collector="inventory") or 0) >= 2
        )
    )
    log: str = exp.log()
    assert "Traceback" not in log
    lines = [ln for ln in log.splitlines() if "inventory job:" in ln]
    assert len(lines) == 1, log  # once per cause, not once per cycle
    assert needle in lines[0], lines[0]
    return lines[0]


def test_no_client_certificate_fails_clearly(engine, scenario, run_exporter):
    exp = run_exporter(*tcp_flags(engine, client=None), *FAST, env=exporter_env())
    s = exp.samples()
    assert value(s, "docker_up") == 0.0
    failing_log(
        exp,
        "GET /version: TLS handshake failed: the engine requires a client certificate"
        " (--docker.tls-cert/-key)",
    )


def test_client_certificate_from_another_ca_fails_clearly(engine, scenario, run_exporter):
    exp = run_exporter(*tcp_flags(engine, client=engine.wrong_ca), *FAST, env=exporter_env())
    assert value(exp.samples(), "docker_up") == 0.0
    failing_log(
        exp,
        "GET /version: TLS handshake failed: the engine refused the client certificate"
        " (not one its CA signed?)",
    )


def test_wrong_ca_fails_clearly(engine, scenario, run_exporter):
    env = exporter_env(
        DOCKER_HOST=engine.tcp_url, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(engine.wrong_ca)
    )
    exp = run_exporter(*FAST, env=env)
    assert value(exp.samples(), "docker_up") == 0.0
    failing_log(exp, "GET /version: TLS verification failed: unable to get local issuer")


def test_removed_objects_vanish_and_engine_restart_recovers(fresh_engine, run_exporter):
    eng = fresh_engine
    ctx = eng.root / "tiny"
    sc.write_context(ctx, 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox"]\n')
    shutil.copy(sc.BUSYBOX, ctx / "busybox")
    eng.cli("build", "-q", "-t", "gone:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    eng.cli("create", "--name", "ephemeral", "gone:1")
    exp = run_exporter("--docker.host", eng.unix_url, *FAST, env=exporter_env())
    s = exp.wait_for(lambda s: value(s, "docker_containers", state="created") == 1.0)
    assert value(s, "docker_container_state", name="ephemeral", state="created") == 1.0
    assert [x["tag"] for x in series(s, "docker_image_tag_info")] == ["1"]

    eng.cli("rm", "ephemeral")
    eng.cli("rmi", "gone:1")
    s = exp.wait_for(lambda s: value(s, "docker_images") == 0.0)
    assert not [k for k in s if k[0].startswith(("docker_container_", "docker_image_"))]
    assert value(s, "docker_containers", state="created") == 0.0

    eng.stop()
    s = exp.wait_for(lambda s: value(s, "docker_up") == 0.0)
    assert value(s, "docker_images") is None  # dropped, not served stale
    assert exp.proc.poll() is None
    eng.start()
    exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    log = exp.log()
    # once per cause: dockerd 26.1 removes its socket first and, with the event stream open,
    # exits seconds later, so a run may fail on a list (its /version cached) before the next
    # one fails on /version; on a busy machine the starting engine may also take longer
    # than the timeout to answer: each cause is logged once, however many runs fail
    failures = [x for x in messages(log) if x.startswith("inventory job: GET")]
    # the containerd image store: a list that races `docker rmi` may fail once on the removed
    # image's content (the next run, a second later, lists without it): a cause of its own
    raced = 'inventory job: GET /images/json: engine answered HTTP 404 "NotFound: content digest'
    if eng.build.containerd_store and failures and failures[0].startswith(raced):
        failures = failures[1:]
    assert failures and len(set(failures)) == len(failures), log
    causes = ("cannot connect to", "no answer within")
    assert all(any(c in x for c in causes) for x in failures), log
    assert "inventory job: recovered" in log and "Traceback" not in log


def test_podman_compatible_api(podman_build, run_exporter):
    from tests.harness.podman import build_podman_scenario, start_podman

    pod = start_podman(build=podman_build)
    try:
        build_podman_scenario(pod)
        exp = run_exporter(
            "--docker.host", pod.unix_url, *FAST, "--collect.disk-usage-interval", "2s",
            "--collect.container-sizes-interval", "2s", env=exporter_env(),
        )  # fmt: skip
        s = exp.wait_for(
            lambda s: (
                value(s, "docker_exporter_collection_success", collector="disk_usage") == 1.0
                and value(s, "docker_exporter_collection_success", collector="container_sizes")
                == 1.0
            )
        )
        info = series(s, "docker_engine_info")
        assert len(info) == 1 and info[0]["product"] == "Podman Engine"
        assert info[0]["version"].startswith(podman_build.version + ".")
        ps = json.loads(pod.cli("ps", "-a", "--format", "json").stdout)
        states = Counter(c["State"] for c in ps)
        assert value(s, "docker_containers", state="running") == states["running"] == 3
        assert value(s, "docker_containers", state="exited") == states["exited"] == 2
        ids = set(pod.cli("images", "-q", "--no-trunc").stdout.split())
        assert value(s, "docker_images") == len(ids) == 5
        dangling = pod.cli("images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split()
        assert value(s, "docker_images_dangling") == len(dangling) == 1
        assert value(s, "docker_container_exit_code", name="inv-exited3") == 3.0
        podman_disk_usage_matches_its_cli(pod, s, podman_build.version, dangling[0])
    finally:
        pod.close()


def test_a_stopped_podman_leaves_nothing_mounted_or_running(podman_build):
    """5.8's chroot: overlay, /proc, /sys, /dev and the bound root, then the mounts podman
    makes for a running container (in its private namespace): all gone after close()."""
    from tests.harness.dockerd import _mounts_under, _pids_referencing
    from tests.harness.podman import ULIMITS, start_podman

    pod = start_podman(build=podman_build)
    try:
        ctx = sc.write_context(pod.root / "b", sc._BASE_DOCKERFILE, with_busybox=True)
        pod.cli("build", "--network", "none", "-q", "-t", sc.BASE, str(ctx))
        pod.cli("run", "-d", *ULIMITS, "--name", "left-running", sc.BASE, "sleep", "100000")
        mounted = _mounts_under(pod.root)
        assert len(mounted) >= (6 if podman_build.chroot is not None else 0), mounted
    finally:
        pod.close()
    assert _mounts_under(pod.root) == [] and not pod.root.exists()
    assert _pids_referencing(pod.root) == []


def podman_disk_usage_matches_its_cli(
    pod: Podman, s: Samples, version: str, dangling_id: str
) -> None:
    """The documented differences from `podman system df` (docs/metrics.md), exactly."""
    rows = {}
    for line in pod.cli("system", "df").stdout.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        rows[parts[0]] = parts[1:]
    total, active, size, reclaimable = rows["Containers"]
    paused = value(s, "docker_container_rw_size_bytes", name="inv-paused")
    assert paused is not None and paused > 0
    # Podman's CLI: only running ones are active; ours (as docker's): paused ones too
    assert value(s, "docker_disk_usage_objects", resource="containers") == int(total) == 7
    assert value(s, "docker_disk_usage_active_objects", resource="containers") == int(active) + 1
    assert human_size(value(s, "docker_disk_usage_bytes", resource="containers") or 0) == size
    reclaim = value(s, "docker_disk_reclaimable_bytes", resource="containers") or 0
    assert human_size(reclaim + paused) == reclaimable.split(" (")[0]
    if version == "4.3":  # LayersSize 0: no images row, no dangling or unused bytes
        assert value(s, "docker_disk_usage_bytes", resource="images") is None
        assert value(s, "docker_images_dangling_unique_bytes") is None
        return
    total, active, size, reclaimable = rows["Images"]
    # Podman's CLI counts a row per tag: inv-app:1 is also inv-alias:v1
    assert value(s, "docker_disk_usage_objects", resource="images") == int(total) - 1 == 7
    assert value(s, "docker_disk_usage_active_objects", resource="images") == int(active)
    assert human_size(value(s, "docker_disk_usage_bytes", resource="images") or 0) == size
    reclaim = value(s, "docker_disk_reclaimable_bytes", resource="images") or 0
    assert human_size(reclaim) == reclaimable.split(" (")[0]
    unique = {
        x["image_id"]: value(s, "docker_image_unique_size_bytes", **x)
        for x in series(s, "docker_image_unique_size_bytes")
    }
    assert len(unique) == 5  # the listed images; the df's 2 intermediate ones are left out
    short = dangling_id.removeprefix("sha256:")[:12]
    assert value(s, "docker_images_dangling_unique_bytes") == unique[short]
    # every container uses inv-app:1: the other four images are the unused ones
    app = pod.cli("image", "inspect", "--format", "{{.Id}}", sc.APP).stdout.strip()
    app = app.removeprefix("sha256:")[:12]
    unused = value(s, "docker_images_unused_unique_bytes")
    assert unused == sum(v or 0 for k, v in unique.items() if k != app)


# --- disk usage: the exporter's figures equal `docker system df` -----------------------------


def df_rows(engine: Engine) -> dict[str, dict[str, str]]:
    rows = [json.loads(x) for x in cli_lines(engine, "system", "df", "--format", "{{json .}}")]
    return {r["Type"]: r for r in rows}


def test_disk_usage_equals_docker_system_df(engine, scenario, run_exporter):
    exp = run_exporter(
        "--docker.host",
        engine.unix_url,
        *FAST,
        "--collect.disk-usage-interval",
        "2s",
        "--collect.container-sizes-interval",
        "2s",
        env=exporter_env(),
    )
    s = exp.wait_for(
        lambda s: (
            value(s, "docker_exporter_collection_success", collector="disk_usage") == 1.0
            and value(s, "docker_exporter_collection_success", collector="container_sizes") == 1.0
        )
    )
    rows = df_rows(engine)
    for resource, row in (
        ("images", "Images"),
        ("containers", "Containers"),
        ("volumes", "Local Volumes"),
        ("build_cache", "Build Cache"),
    ):
        r = rows[row]
        assert value(s, "docker_disk_usage_objects", resource=resource) == int(r["TotalCount"])
        assert value(s, "docker_disk_usage_active_objects", resource=resource) == int(r["Active"])
        size = value(s, "docker_disk_usage_bytes", resource=resource)
        reclaim = value(s, "docker_disk_reclaimable_bytes", resource=resource)
        assert size is not None and reclaim is not None
        assert human_size(size) == r["Size"], resource
        assert human_size(reclaim) == r["Reclaimable"].split(" (")[0], resource
    assert value(s, "docker_disk_usage_objects", resource="build_cache") == (
        6 if scenario.build_cache else 0
    )

    verbose = engine.cli("system", "df", "-v").stdout
    table = verbose.split("Images space usage:")[1].split("Containers space usage:")[0]
    for line in [ln for ln in table.strip().splitlines()[1:] if ln.strip()]:
        parts = re.split(r"\s{2,}", line.strip())
        image_id, shared, unique = parts[2], parts[5], parts[6]
        key = [x for x in series(s, "docker_image_unique_size_bytes") if x["image_id"] == image_id]
        assert len(key) == 1, image_id
        got_unique = value(s, "docker_image_unique_size_bytes", **key[0])
        got_shared = value(s, "docker_image_shared_size_bytes", **key[0])
        assert (human_size(got_shared or 0), human_size(got_unique or 0)) == (shared, unique)

    sizes = [json.loads(x) for x in cli_lines(engine, "ps", "-a", "-s", "--format", "{{json .}}")]
    for p in sizes:  # "30.7kB (virtual 2.12MB)"
        rw, virtual = re.match(r"(\S+) \(virtual (\S+)\)", p["Size"]).groups()  # type: ignore[union-attr]
        got_rw = value(s, "docker_container_rw_size_bytes", name=p["Names"])
        got_virtual = value(s, "docker_container_rootfs_size_bytes", name=p["Names"])
        # a real 0 too where the engine left SizeRw out (28.5's classic store: omitempty)
        assert got_rw is not None and human_size(got_rw, 3) == rw
        assert got_virtual is not None and human_size(got_virtual, 3) == virtual

    # /info, read with /version: the data root and driver `docker info` names; on this local
    # unix socket with the data root visible, the exporter measures its filesystem itself
    root, driver = engine.cli("info", "--format", "{{.DockerRootDir}} {{.Driver}}").stdout.split()
    assert series(s, "docker_engine_storage_info") == [
        {"data_root": root, "storage_driver": driver}
    ]
    fs = os.statvfs(root)
    assert value(s, "docker_data_root_filesystem_size_bytes") == fs.f_blocks * fs.f_frsize
    avail = value(s, "docker_data_root_filesystem_avail_bytes")
    assert avail is not None and 0 < avail < fs.f_blocks * fs.f_frsize


def layers_size(engine: Engine) -> int:
    client = docker.APIClient(base_url=engine.unix_url, version="1.41")
    try:
        return int(client.df()["LayersSize"])
    finally:
        client.close()


def content_and_unpacked(engine: Engine, image_id: str) -> tuple[int, int]:
    """The containerd store's split of an image's ``Size`` (``/images/json?manifests=1``,
    API 1.47+): its compressed content (blobs, config, manifests) and its unpacked snapshots."""
    client = docker.APIClient(base_url=engine.unix_url, version="1.51")
    try:
        url = client._url("/images/json")
        images = client.get(url, params={"all": "1", "manifests": "1"}).json()
    finally:
        client.close()
    (image,) = [i for i in images if i["Id"] == image_id]
    (manifest,) = [m for m in image["Manifests"] if m["Kind"] == "image"]
    assert image["Size"] == manifest["Size"]["Total"]
    return manifest["Size"]["Content"], manifest["ImageData"]["Size"]["Unpacked"]


def test_prune_frees_at_least_the_reported_unique_bytes(fresh_engine, run_exporter):
    eng = fresh_engine
    scen = sc.build_scenario(eng, buildkit=False)
    exp = run_exporter(
        "--docker.host",
        eng.unix_url,
        *FAST,
        "--collect.disk-usage-interval",
        "1s",
        env=exporter_env(),
    )

    def fresh_df(after: float):
        return exp.wait_for(
            lambda s: (
                (
                    value(
                        s, "docker_exporter_last_success_timestamp_seconds", collector="disk_usage"
                    )
                    or 0
                )
                > after
            )
        )

    s = fresh_df(0)
    dangling = value(s, "docker_images_dangling_unique_bytes")
    containerd_store = eng.build.containerd_store
    if containerd_store:
        # The containerd store's Size counts the image's compressed content (its layer blobs,
        # config and manifest) beside its unpacked snapshots, while SharedSize counts shared
        # snapshots only: the "unique" bytes (Size - SharedSize, the UNIQUE SIZE of `docker
        # system df -v`) include the blob of the base layer that every image shares, and
        # pruning frees less than them. Exactly: its snapshot's own bytes (the 150 KiB file,
        # in filesystem blocks) plus all of its content.
        (key,) = [
            x
            for x in series(s, "docker_image_shared_size_bytes")
            if x["image_id"] == scen.dangling_image[7:19]
        ]
        shared = value(s, "docker_image_shared_size_bytes", **key)
        content, unpacked = content_and_unpacked(eng, scen.dangling_image)
        assert shared is not None and dangling == content + unpacked - shared
        own_snapshot = unpacked - shared
        assert sc.APP2_OLD_BLOB <= own_snapshot < sc.APP2_OLD_BLOB + 64 * 1024
    else:
        # the untagged first build of inv-app:2; inv-outdated's untagged image is used, so kept
        assert dangling == sc.APP2_OLD_BLOB
    before = layers_size(eng)
    eng.cli("image", "prune", "-f")
    freed = before - layers_size(eng)
    if containerd_store:
        # its snapshot and the blobs no other image has go; the shared base blob stays
        assert dangling is not None and own_snapshot < freed < dangling, (freed, dangling)
    else:
        assert freed >= dangling, (freed, dangling)

    t = value(
        exp.samples(), "docker_exporter_last_success_timestamp_seconds", collector="disk_usage"
    )
    s = fresh_df(t or 0)
    assert value(s, "docker_images_dangling_unique_bytes") == 0.0
    unused = value(s, "docker_images_unused_unique_bytes")
    before = layers_size(eng)
    eng.cli("image", "prune", "-af")
    freed = before - layers_size(eng)
    assert unused is not None and unused > 0
    if containerd_store:
        # each unused image's "unique" bytes count the base layer's blob again (see above)
        assert 0 < freed < unused, (freed, unused)
    else:
        assert freed >= unused, (freed, unused)
    assert scen.unused_image not in eng.cli("images", "-q", "--no-trunc").stdout


def test_a_buildkit_rebuild_leaves_a_dangling_image_except_on_the_containerd_store(
    fresh_engine, run_exporter
):
    """BuildKit rebuilds a tag: the classic store keeps the old image, untagged (dangling);
    the containerd store drops it (nothing but the tag referenced it), so neither `docker
    images -f dangling=true` nor docker_images_dangling counts it there."""
    eng = fresh_engine
    for content in ("one", "two"):
        sc.write_context(
            eng.root / "rebuilt",
            'FROM scratch\nCOPY busybox /bin/busybox\nCOPY file.txt /file.txt\nCMD ["sh"]\n',
            {"file.txt": content.encode()},
            with_busybox=True,
        )
        sc.build(eng, eng.root / "rebuilt", ("rebuilt:1",), buildkit=True)
    want = 0 if eng.build.containerd_store else 1
    dangling = cli_lines(eng, "images", "-q", "--no-trunc", "-f", "dangling=true")
    assert len(dangling) == want
    exp = run_exporter("--docker.host", eng.unix_url, *FAST, env=exporter_env())
    s = exp.wait_for(lambda s: value(s, "docker_up") == 1.0)
    assert (value(s, "docker_images"), value(s, "docker_images_dangling")) == (1 + want, want)
