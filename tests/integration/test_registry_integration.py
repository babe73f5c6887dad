"""The registry update check against a real registry (Debian's docker-registry 2.8.2) and
a real dockerd that pushes to it and pulls from it.

- the whole cycle on each engine version: current after a pull, pull after another image is
  pushed to the tag, recreate after docker pull, current after the container is recreated,
  local for an image built here; and a multi-arch index pulled by tag reads current;
- TLS with htpasswd, and token auth with a token issuer of our own, with the exporter's
  client alone (dockerd reads registry CAs only from /etc/docker/certs.d, which tests never
  touch: engine pushes use plain HTTP, which 127.0.0.0/8 gets by default);
- a two-target fleet on one engine: one registry request per tag per interval, counted in
  the registry's own access log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import yaml

from exporter.config import EngineConfig, JobSchedule
from exporter.engine import EngineClient
from exporter.jobs import RegistryJob
from exporter.reference import parse_reference
from exporter.registry import RegistryChecker, RegistryClient, RegistryError
from exporter.registry_credentials import Credentials, CredentialStore
from exporter.state import State
from tests.harness.dockerd import Engine
from tests.harness.registry import (
    EXPORTER_AGENT,
    RegistryServer,
    TokenIssuer,
    push_multi_arch,
    registry_server,
    registry_unavailable,
    tiny_image,
)
from tests.support.certs import make_pki
from tests.support.env import clean_env, need
from tests.support.loopback import tls_server_context
from tests.support.process import ExporterProcess
from tests.support.promql import parse_samples, value
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def statuses(job: RegistryJob) -> dict[str, str]:
    snap = job.collect(time.time())
    return {c.name: c.status for c in snap.containers}


@pytest.fixture
def registry() -> object:
    need(registry_unavailable())
    with registry_server() as reg:
        yield reg


def test_the_whole_cycle_on_a_real_engine(fresh_engine: Engine, registry: RegistryServer):
    eng, reg = fresh_engine, registry
    tag = f"{reg.host}/cycle/app:v1"
    checker = RegistryChecker(CredentialStore(None))
    client = EngineClient(EngineConfig(eng.unix_url), 10.0)
    # interval 1 s: every collect() below asks the registry afresh
    job = RegistryJob(client, JobSchedule(1.0, 10.0), State(registry=True).registry, checker)

    first = tiny_image(eng, tag, "first")
    eng.cli("push", tag)
    eng.cli("rmi", tag)
    eng.cli("pull", tag)
    eng.cli("create", "--name", "app", tag)
    time.sleep(1.0)
    assert statuses(job) == {"app": "current"}

    # another image pushed to the tag (the local tag is put back on the first one)
    tiny_image(eng, tag, "second")
    eng.cli("push", tag)
    eng.cli("tag", first, tag)
    time.sleep(1.0)
    assert statuses(job) == {"app": "pull"}

    eng.cli("pull", tag)  # the tag moves locally; the container's list entry shows an ID
    listed = json.loads(eng.cli("ps", "-a", "--format", "{{json .}}").stdout)
    assert listed["Image"] != tag
    time.sleep(1.0)
    assert statuses(job) == {"app": "recreate"}

    eng.cli("rm", "app")
    eng.cli("create", "--name", "app", tag)
    # built here, never pushed: at a tag the registry has none for, and at a tag it holds
    # another image for. The classic store records no digest for them (no registry request);
    # the containerd store names their own manifest digests in RepoDigests, which the
    # registry answers 404 for: local, not pull
    dev, rebuilt = f"{reg.host}/cycle/dev:dev", f"{reg.host}/cycle/other:v1"
    tiny_image(eng, dev, "local")
    eng.cli("create", "--name", "dev", dev)
    tiny_image(eng, rebuilt, "remote")
    eng.cli("push", rebuilt)
    tiny_image(eng, rebuilt, "rebuilt-here")
    eng.cli("create", "--name", "rebuilt", rebuilt)
    time.sleep(1.0)
    assert statuses(job) == {"app": "current", "dev": "local", "rebuilt": "local"}
    heads = reg.requests("HEAD", "/cycle/app/manifests/v1", EXPORTER_AGENT)
    assert len(heads) == 4  # one per check, never a GET of the manifest
    assert reg.requests("GET", "", EXPORTER_AGENT) == []
    by_digest = sorted(
        (p.split("/")[3], s)
        for _, p, s in reg.requests("HEAD", "/manifests/sha256:", EXPORTER_AGENT)
    )
    if eng.build.containerd_store:
        # the "pull" check asked for the first image's digest (found), the last one for the
        # two built here (404); the tags of the last check: dev 404, other another digest
        assert by_digest == [("app", "200"), ("dev", "404"), ("other", "404")]
        assert len(reg.requests("HEAD", "/cycle/dev/manifests/dev", EXPORTER_AGENT)) == 1
    else:
        assert by_digest == []
        assert reg.requests("HEAD", "/cycle/dev/", EXPORTER_AGENT) == []


def test_a_multi_arch_index_pulled_by_tag_reads_current(
    fresh_engine: Engine, registry: RegistryServer
):
    """The engine keeps the index's digest after a pull by tag: so does the HEAD's answer."""
    eng, reg = fresh_engine, registry
    index_digest = push_multi_arch(eng, reg, "multi/app", "latest")
    tag = f"{reg.host}/multi/app:latest"
    eng.cli("pull", tag)
    eng.cli("create", "--name", "multi", tag)
    digests = eng.inspect(tag, kind="image")[0]["RepoDigests"]
    assert f"{reg.host}/multi/app@{index_digest}" in digests  # type: ignore[operator]
    client = EngineClient(EngineConfig(eng.unix_url), 10.0)
    checker = RegistryChecker(CredentialStore(None))
    job = RegistryJob(client, JobSchedule(60.0, 10.0), State(registry=True).registry, checker)
    assert statuses(job) == {"multi": "current"}
    # and the digest the registry answers is the index's
    answer = RegistryClient(reg.host, reg.host, True, lambda: None).head_manifest(
        parse_reference(tag)
    )
    assert answer.digest == index_digest


def push_with_registry_api(
    reg_url: str, path: str, tag: str, auth: dict[str, str], verify: str
) -> str:
    """A minimal image pushed over the registry API (blob, config, manifest): its digest."""
    import hashlib

    session = requests.Session()
    # verify on every request: REQUESTS_CA_BUNDLE would replace a session's CA
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = session.post(
        f"{reg_url}/v2/{path}/blobs/uploads/", headers=auth, timeout=10, verify=verify or True
    )
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    upload = location if location.startswith("http") else reg_url + location
    put = session.put(
        f"{upload}{sep}digest={digest}",
        data=config,
        headers=auth,
        timeout=10,
        verify=verify or True,
    )
    assert put.status_code == 201, put.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    done = session.put(
        f"{reg_url}/v2/{path}/manifests/{tag}",
        data=manifest,
        headers={**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
        verify=verify or True,
    )
    assert done.status_code == 201, done.text
    return done.headers["Docker-Content-Digest"]


def test_tls_and_htpasswd(tmp_path: Path):
    need(registry_unavailable())
    pki = make_pki(tmp_path / "pki")
    certs = pki.server_cert.parent
    users = (("alice", "s3cret"),)
    with registry_server(tls=(pki.server_cert, pki.server_key), htpasswd=users) as reg:
        import base64

        basic = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
        digest = push_with_registry_api(f"https://{reg.host}", "sec/app", "v1", basic, str(pki.ca))
        certs_d = tmp_path / "certs.d"
        (certs_d / reg.host).mkdir(parents=True)
        (certs_d / reg.host / "ca.crt").write_bytes(pki.ca.read_bytes())
        ref = parse_reference(f"{reg.host}/sec/app:v1")
        good = RegistryClient(
            reg.host,
            reg.host,
            False,
            lambda: Credentials("alice", "s3cret"),
            certs_dir=str(certs_d),
        )
        assert good.head_manifest(ref).digest == digest
        anonymous = RegistryClient(reg.host, reg.host, False, lambda: None, certs_dir=str(certs_d))
        with pytest.raises(RegistryError, match=r"unauthorized \(HTTP 401\)"):
            anonymous.head_manifest(ref)
        no_ca = RegistryClient(
            reg.host,
            reg.host,
            False,
            lambda: Credentials("alice", "s3cret"),
            certs_dir=str(tmp_path),
        )
        with pytest.raises(RegistryError, match="TLS verification failed"):
            no_ca.head_manifest(ref)
        del certs


def test_token_auth_with_our_own_issuer(tmp_path: Path):
    """TLS registry in token mode; the issuer on another port, over HTTPS: the registry's
    credentials may go there (over plain HTTP to another host:port they would not)."""
    need(registry_unavailable())
    pki = make_pki(tmp_path / "pki")
    tls = tls_server_context(pki.server_cert.parent)
    issuer = TokenIssuer(pki.server_key, pki.server_cert, {"alice": "s3cret"}, 60, tls)
    certs_d = tmp_path / "certs.d"
    try:
        with registry_server(
            tls=(pki.server_cert, pki.server_key), token=(issuer.url, pki.server_cert)
        ) as reg:
            push_access: list[dict[str, object]] = [
                {"type": "repository", "name": "tok/app", "actions": ["push", "pull"]}
            ]
            bearer = {"Authorization": f"Bearer {issuer.sign('alice', push_access)}"}
            url = f"https://{reg.host}"
            digest = push_with_registry_api(url, "tok/app", "v1", bearer, str(pki.ca))
            (certs_d / reg.host).mkdir(parents=True)
            (certs_d / reg.host / "ca.crt").write_bytes(pki.ca.read_bytes())
            ref = parse_reference(f"{reg.host}/tok/app:v1")
            alice = Credentials("alice", "s3cret")
            client = RegistryClient(
                reg.host, reg.host, False, lambda: alice, certs_dir=str(certs_d)
            )
            assert client.head_manifest(ref).digest == digest
            assert client.head_manifest(ref).digest == digest
            assert len(issuer.seen) == 1  # the token is cached
            query, authorization = issuer.seen[0]
            assert query == "scope=repository%3Atok%2Fapp%3Apull&service=test-registry"
            assert authorization == "Basic YWxpY2U6czNjcmV0"
            assert [s for _, _, s in reg.requests("HEAD")] == ["401", "200", "200"]
            anonymous = RegistryClient(
                reg.host, reg.host, False, lambda: None, certs_dir=str(certs_d)
            )
            with pytest.raises(RegistryError, match=r"unauthorized \(HTTP 401\)"):
                anonymous.head_manifest(ref)
    finally:
        issuer.close()


def test_a_two_target_fleet_asks_once_per_tag_per_interval(
    fresh_engine: Engine, registry: RegistryServer, tmp_path: Path
):
    eng, reg = fresh_engine, registry
    tag = f"{reg.host}/fleet/app:v1"
    tiny_image(eng, tag, "fleet")
    eng.cli("push", tag)
    eng.cli("create", "--name", "one", tag)
    config = tmp_path / "fleet.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {"registry_interval": "4s", "registry_timeout": "3s"},
                "targets": [
                    {"name": "a", "host": eng.unix_url},
                    {"name": "b", "host": eng.unix_url},
                ],
            }
        )
    )
    exp = ExporterProcess(
        ["--config.file", str(config), "--collect.registry-certs-dir", str(tmp_path / "none")],
        tmp_path / "exporter.log",
        env=clean_env({"DOCKER_CONFIG": str(tmp_path / "docker-config")}),
    )
    try:
        exp.wait_ready()
        started = time.monotonic()

        def current(target: str) -> bool:
            body = exp.get(f"/metrics?target={target}")[1].decode()
            return (
                value(
                    parse_samples(body),
                    "docker_container_update_status",
                    name="one",
                    status="current",
                )
                == 1.0
            )

        wait_until(
            lambda: current("a") and current("b"),
            30.0,
            what="both targets read current",
            diagnostics=exp.log,
        )
        time.sleep(9.0)
        elapsed = time.monotonic() - started
        samples = parse_samples(exp.get("/metrics?target=a")[1].decode())
        counted = value(
            samples, "docker_registry_requests_total", registry=reg.host, method="HEAD", code="200"
        )
    finally:
        exp.stop()
    heads = reg.requests("HEAD", "/fleet/app/manifests/v1", EXPORTER_AGENT)
    times = reg.request_times("HEAD", "/fleet/app/manifests/v1", EXPORTER_AGENT)
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"fleet of 2 targets: {len(heads)} HEAD requests in {elapsed:.1f}s at a 4s interval")
    # one per interval for both targets together: at most one more than the intervals begun
    assert 1 <= len(heads) <= int(elapsed // 4) + 2
    assert counted is not None and counted <= len(heads)
    # never two requests for the tag within one interval (the log has whole seconds)
    assert all(gap >= 3 for gap in gaps), gaps
