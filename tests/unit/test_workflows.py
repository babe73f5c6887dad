"""The GitHub Actions workflows, read as files, for what a release must do: run the test
command, build and ``twine check`` the distributions, build a two-architecture image with
version and revision labels, push it under the name the README states, and publish to PyPI
through trusted publishing. Pull requests run .ci/run.

tests/integration/test_workflow_lint.py runs check-jsonschema and actionlint on them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import REPO, documentation

WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
CI = WORKFLOWS / "ci.yml"
ALL = sorted(WORKFLOWS.glob("*.yml"))


def _load(path: Path) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    return data


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps", [])
    return steps


def test_there_are_the_two_workflows() -> None:
    assert [p.name for p in ALL] == ["ci.yml", "release.yml"]


def _published_image() -> str:
    image: str = _load(RELEASE)["env"]["IMAGE"]
    return image


def test_release_is_triggered_by_version_tags() -> None:
    on = _load(RELEASE)[True]  # YAML 1.1 reads the key "on" as True
    assert on == {"push": {"tags": ["v*"]}}
    jobs = _load(RELEASE)["jobs"]
    check = "\n".join(s.get("run", "") for s in _steps(jobs["version"]))
    assert 'if [ "$TAG" != "v$version" ]' in check  # a tag that is not the version stops it


def test_release_runs_the_test_command_first() -> None:
    jobs = _load(RELEASE)["jobs"]
    assert any(s.get("run") == "bash .ci/run" for s in _steps(jobs["test"]))
    assert jobs["dist"]["needs"] == "test"
    assert set(jobs["image"]["needs"]) == {"version", "test"}
    assert set(jobs["pypi"]["needs"]) == {"dist", "image"}


def test_release_builds_and_checks_the_distributions() -> None:
    run = "\n".join(s.get("run", "") for s in _steps(_load(RELEASE)["jobs"]["dist"]))
    assert "python -m build" in run
    assert "twine check --strict dist/*" in run


def test_release_image_is_multi_arch_labelled_and_named_as_documented() -> None:
    job = _load(RELEASE)["jobs"]["image"]
    (build,) = [s for s in _steps(job) if s.get("uses", "").startswith("docker/build-push-action")]
    options = build["with"]
    assert options["platforms"] == "linux/amd64,linux/arm64"
    assert options["push"] is True
    args = dict(line.split("=", 1) for line in options["build-args"].splitlines())
    assert args["VERSION"] == "${{ needs.version.outputs.version }}"
    assert args["REVISION"] == "${{ github.sha }}"
    # the Dockerfile turns those build args into the OCI labels
    dockerfile = (REPO / "Dockerfile").read_text()
    for arg, label in (("VERSION", "version"), ("REVISION", "revision"), ("CREATED", "created")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in dockerfile
    tags = options["tags"].splitlines()
    image = "${{ env.IMAGE }}"
    assert tags == [f"{image}:${{{{ needs.version.outputs.{part} }}}}" for part in
                    ("version", "minor")] + [f"{image}:latest"]  # fmt: skip
    assert job["permissions"]["packages"] == "write"
    assert f"`{_published_image()}`" in documentation()


def test_pypi_uses_trusted_publishing() -> None:
    job = _load(RELEASE)["jobs"]["pypi"]
    assert job["permissions"] == {"id-token": "write"}
    (publish,) = [s for s in _steps(job) if "pypi-publish" in s.get("uses", "")]
    assert publish["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert "with" not in publish  # no password or token: OIDC only
    assert "secrets." not in RELEASE.read_text().replace("secrets.GITHUB_TOKEN", "")


def test_ci_runs_ci_run_on_pull_requests() -> None:
    data = _load(CI)
    assert "pull_request" in data[True]
    (job,) = data["jobs"].values()
    assert [s.get("run") for s in _steps(job) if "run" in s] == ["bash .ci/run"]
    # the suite starts its own dockerd: root in a privileged Debian 12 container
    assert job["container"]["image"] == "debian:12"
    assert "--privileged" in job["container"]["options"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_version(path: Path) -> None:
    for job in _load(path)["jobs"].values():
        for step in _steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|release/v\d+)", step["uses"]), step
