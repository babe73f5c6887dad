"""Record raw engine API answers as JSON fixtures: ``python -m tests.record_fixtures``.

Starts a private dockerd of each version the engine tests run (Debian 12's 20.10, Debian
13's 26.1 and sid's 28.5 in both image stores, see ``tests/harness/debian_docker.py``) and a
private podman service of each version (4.3, and 5.8 from tests/harness/podman5.py's chroot),
builds the test scenario in each (``tests/harness/scenario.py``, ``tests/harness/podman.py``),
then stores the JSON of a few GET endpoints, pretty-printed with sorted keys, under
``tests/fixtures/docker-<version>/`` and ``tests/fixtures/podman-<version>/``; plus the text
of ``docker system df`` and ``docker system df -v`` (and Podman's own CLI text) and, for
both, a ``scenario.json`` naming what the scenario created (ids, names).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import docker

from tests.harness import debian_docker
from tests.harness.dockerd import EngineBuild, dockerd_available, start_engine
from tests.harness.podman import (
    VERSIONS as PODMAN_VERSIONS,
)
from tests.harness.podman import (
    build_podman_scenario,
    build_unavailable,
    podman_build,
    start_podman,
)
from tests.harness.scenario import build_scenario
from tests.support.paths import FIXTURES

ENDPOINTS: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "images": ("/images/json", {}),
    "containers": ("/containers/json", {"all": "1"}),
    "version": ("/version", {}),
    "info": ("/info", {}),
    "system_df": ("/system/df", {}),
    "containers_size": ("/containers/json", {"all": "1", "size": "1"}),
}

# What the podman CLI printed for the same state, beside the answers
PODMAN_CLI: Mapping[str, tuple[str, ...]] = {
    "system_df.txt": ("system", "df"),
    "system_df_v.txt": ("system", "df", "-v"),
    "images.txt": ("images", "--no-trunc"),
    "images_dangling.txt": ("images", "--no-trunc", "-q", "-f", "dangling=true"),
    "ps.txt": ("ps", "-a", "--size", "--no-trunc", "--format", "{{.Names}} {{.State}} {{.Size}}"),
}

DOCKER_VERSIONS = debian_docker.ENGINE_VERSIONS


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def fetch(unix_url: str) -> tuple[dict[str, object], dict[str, str]]:
    """GET every endpoint; returns (name -> JSON, name -> error for the ones that failed)."""
    client = docker.APIClient(base_url=unix_url, version="auto", timeout=120)
    client.trust_env = False
    answers: dict[str, object] = {}
    errors: dict[str, str] = {}
    try:
        for name, (path, params) in ENDPOINTS.items():
            url = f"{client.base_url}/v{client.api_version}{path}"
            try:
                response = client.get(url, params=dict(params))
                response.raise_for_status()
                answers[name] = response.json()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return answers, errors


def write_answers(out: Path, answers: Mapping[str, object]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in answers.items():
        path = out / f"{name}.json"
        dump_json(path, data)
        written.append(path)
    return written


def scenario_json(scenario: object) -> dict[str, object]:
    assert dataclasses.is_dataclass(scenario) and not isinstance(scenario, type)
    data = dataclasses.asdict(scenario)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def record_docker(out: Path, build: EngineBuild) -> list[Path]:
    t0 = time.monotonic()
    engine = start_engine(build=build)
    try:
        started = time.monotonic() - t0
        scenario = build_scenario(engine)
        answers, errors = fetch(engine.unix_url)
        if errors:
            raise RuntimeError(f"docker endpoints failed: {errors}")
        written = write_answers(out, answers)
        for name, args in (("system_df.txt", ()), ("system_df_v.txt", ("-v",))):
            path = out / name
            path.write_text(engine.cli("system", "df", *args).stdout)
            written.append(path)
        meta = scenario_json(scenario)
        meta.pop("build_dir", None)
        meta.pop("duration", None)
        dump_json(out / "scenario.json", meta)
        written.append(out / "scenario.json")
        print(
            f"docker {build.version}: engine up in {started:.1f}s, "
            f"scenario in {scenario.duration:.1f}s, "
            f"build cache: {scenario.build_cache} {scenario.build_cache_note}",
            file=sys.stderr,
        )
        return written
    finally:
        engine.close()


def record_podman(out: Path, version: str) -> list[Path]:
    t0 = time.monotonic()
    p = start_podman(build=podman_build(version))
    try:
        started = time.monotonic() - t0
        scenario = build_podman_scenario(p)
        answers, errors = fetch(p.unix_url)
        required = set(ENDPOINTS) - {"system_df"}
        if required & set(errors):
            raise RuntimeError(f"podman endpoints failed: {errors}")
        for name, error in errors.items():
            print(f"podman {version}: skipped {name}: {error}", file=sys.stderr)
            stale = out / f"{name}.json"
            stale.unlink(missing_ok=True)
        written = write_answers(out, answers)
        if version != "4.3":  # 4.3's were recorded before these; its CLI is checked live
            for name, args in PODMAN_CLI.items():
                (out / name).write_text(p.cli(*args).stdout)
                written.append(out / name)
        meta = scenario_json(scenario)
        meta.pop("duration", None)
        dump_json(out / "scenario.json", meta)
        written.append(out / "scenario.json")
        print(
            f"podman {version}: service up in {started:.1f}s,"
            f" scenario in {scenario.duration:.1f}s, "
            f"health: {scenario.health} ({scenario.health_note})",
            file=sys.stderr,
        )
        return written
    finally:
        p.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=FIXTURES, help="fixtures directory")
    parser.add_argument(
        "--docker",
        action="append",
        choices=DOCKER_VERSIONS,
        help="record only this dockerd version (repeatable; default: all)",
    )
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument(
        "--podman",
        action="append",
        choices=PODMAN_VERSIONS,
        help="record only this podman version (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    written: list[Path] = []
    for version in [] if args.no_docker else args.docker or DOCKER_VERSIONS:
        build = debian_docker.build_for(version)
        reason = dockerd_available(build)
        if reason:
            print(f"docker {version}: cannot record: {reason}", file=sys.stderr)
            return 1
        written += record_docker(args.out / f"docker-{version}", build)
    for version in [] if args.no_podman else args.podman or PODMAN_VERSIONS:
        reason = build_unavailable(version)
        if reason:
            print(f"podman {version}: cannot record: {reason}", file=sys.stderr)
            return 1
        written += record_podman(args.out / f"podman-{version}", version)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
