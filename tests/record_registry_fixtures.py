"""Record what the engine keeps after pulls by tag from a real registry, for the registry
job's unit tests: ``python -m tests.record_registry_fixtures``.

For each dockerd version the engine tests run (or those named as arguments), with a private
docker-registry on loopback: a single-arch image pushed, removed and pulled by tag; a
multi-arch OCI index (linux/amd64 and linux/arm64) pulled by tag; one container created from
each. Stores /images/json and /containers/json as the engine answers, and the digest the
registry answers to the exporter's HEAD for each tag, under
``tests/fixtures/registry-docker-<version>/``.
"""

from __future__ import annotations

import json
import sys

import docker

from exporter.reference import parse_reference
from exporter.registry import RegistryClient
from tests.harness import debian_docker
from tests.harness.dockerd import EngineBuild, dockerd_available, start_engine
from tests.harness.registry import (
    push_multi_arch,
    registry_server,
    registry_unavailable,
    tiny_image,
)
from tests.support.paths import FIXTURES


def record(build: EngineBuild) -> None:
    out = FIXTURES / f"registry-docker-{build.version}"
    out.mkdir(parents=True, exist_ok=True)
    engine = start_engine(build=build)
    try:
        with registry_server() as reg:
            single = f"{reg.host}/single/app:v1"
            tiny_image(engine, single, "single")
            engine.cli("push", single)
            engine.cli("rmi", single)
            engine.cli("pull", single)
            engine.cli("create", "--name", "single", single)
            multi = f"{reg.host}/multi/app:latest"
            push_multi_arch(engine, reg, "multi/app", "latest")
            engine.cli("pull", multi)
            engine.cli("create", "--name", "multi", multi)
            api = docker.APIClient(base_url=engine.unix_url, version="auto", timeout=60)
            api.trust_env = False
            answers = {
                "images": api.get(api._url("/images/json")).json(),
                "containers": api.get(api._url("/containers/json"), params={"all": "1"}).json(),
            }
            heads = {}
            for tag in (single, multi):
                client = RegistryClient(reg.host, reg.host, True, lambda: None)
                heads[tag] = client.head_manifest(parse_reference(tag)).digest
            answers["registry"] = {"host": reg.host, "digests": heads}
            for name, data in answers.items():
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
                (out / f"{name}.json").write_text(text)
            print(f"docker {build.version}: recorded into {out}", file=sys.stderr)
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    """``argv``: the dockerd versions to record (default: every one available here)."""
    wanted = (sys.argv[1:] if argv is None else argv) or debian_docker.ENGINE_VERSIONS
    missing = registry_unavailable()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    builds = [
        debian_docker.build_for(version)
        for version in wanted
        if debian_docker.build_unavailable(version) is None
    ]
    for build in builds:
        reason = dockerd_available(build)
        if reason:
            print(f"docker {build.version}: {reason}", file=sys.stderr)
            return 1
        record(build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
