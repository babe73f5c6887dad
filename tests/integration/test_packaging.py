"""The release artifacts, built and installed the way a user or the release workflow does.

* ``python -m build`` makes the sdist, then the wheel *from that sdist* (so a file missing
  from the sdist breaks the wheel build here, not on PyPI), and ``twine check --strict``
  passes on both;
* both carry the Apache-2.0 LICENSE, the wheel its console script and ``py.typed``;
* the wheel, installed into a fresh virtualenv with nothing else, runs ``--version``;
* ``pipx install`` of a checkout (the README's install path) gives a working command.

Offline: pip gets the build backend and the dependencies from the same wheel cache the
image tests use (``tests.harness.baseimage.dependency_wheels``), through PIP_NO_INDEX and
PIP_FIND_LINKS, so nothing but that cache (filled once from the package index) is read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.baseimage import CACHE_DIR, dependency_wheels
from tests.support.paths import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.integration

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME: str = PROJECT["name"]
VERSION: str = PROJECT["version"]
SCRIPT = next(iter(PROJECT["scripts"]))
DIST_NAME = NAME.replace("-", "_")
BIN = Path(sys.executable).parent
# A checkout as a user has it: what the sdist needs (nothing of .venv, caches, tests).
CHECKOUT_FILES = ("pyproject.toml", "README.md", "LICENSE", "exporter")


def _offline_env(wheels: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with pip pointed at the local wheel cache only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PIPX_", "VIRTUAL"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _pip_wheel(cache_dir: Path = CACHE_DIR) -> Path:
    """A directory with a current pip wheel: pipx upgrades pip in its shared venv first."""
    target = cache_dir / "pip-wheel"
    if not any(target.glob("pip-*.whl")):
        partial = cache_dir / f"pip-wheel.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
              "--dest", str(partial), "pip"], dict(os.environ), cache_dir)  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def _checkout(dest: Path) -> Path:
    dest.mkdir()
    for name in CHECKOUT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    return dest


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    wheels: Path  # the offline cache of dependencies and build requirements


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    wheels, _ = dependency_wheels(REPO)
    work = tmp_path_factory.mktemp("build")
    source = _checkout(work / "src")
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
         _offline_env(wheels), work)  # fmt: skip
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield Dist(sdist, wheel, wheels)


def test_artifact_names_follow_the_version(dist: Dist) -> None:
    assert dist.sdist.name == f"{DIST_NAME}-{VERSION}.tar.gz"
    assert dist.wheel.name == f"{DIST_NAME}-{VERSION}-py3-none-any.whl"


def test_twine_check_strict(dist: Dist) -> None:
    proc = _run([str(BIN / "twine"), "check", "--strict", str(dist.sdist), str(dist.wheel)],
                dict(os.environ), dist.sdist.parent)  # fmt: skip
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_license_and_typing_marker_are_shipped(dist: Dist) -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a stub

    with tarfile.open(dist.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
        member = sdist.extractfile(f"{DIST_NAME}-{VERSION}/LICENSE")
        assert member is not None and member.read().decode() == license_text
    assert {"LICENSE", "README.md", "pyproject.toml", "exporter/py.typed"} <= names

    with zipfile.ZipFile(dist.wheel) as wheel:
        wheel_names = set(wheel.namelist())
        info = f"{DIST_NAME}-{VERSION}.dist-info"
        licenses = [n for n in wheel_names if n.startswith(info) and n.endswith("/LICENSE")]
        assert len(licenses) == 1, sorted(wheel_names)
        assert wheel.read(licenses[0]).decode() == license_text
        assert "exporter/py.typed" in wheel_names
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert re.search(rf"^{SCRIPT} = exporter\.cli:run$", entry_points, re.M), entry_points
    assert re.search(r"^Requires-Python: >=3\.9$", metadata, re.M)
    assert re.search(r"^License: Apache-2\.0$|^License-Expression: Apache-2\.0$", metadata, re.M)
    # no test code or repository leftovers in the wheel
    assert not any(n.startswith(("tests/", "deploy/", ".")) for n in wheel_names)


def test_wheel_console_script_in_a_clean_venv(dist: Dist, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = _offline_env(dist.wheels)
    _run([base_python, "-m", "venv", str(venv)], env, tmp_path)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", str(dist.wheel)], env, tmp_path)
    # nothing of this checkout on the path: run from an empty directory, isolated env
    clean = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = _run([str(venv / "bin" / SCRIPT), "--version"], clean, tmp_path)
    assert proc.stdout.strip() == f"{SCRIPT} {VERSION}", proc.stdout
    where = _run([str(venv / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
                 clean, tmp_path)  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout


def test_pipx_install_from_a_checkout(dist: Dist, tmp_path: Path) -> None:
    """The README's ``pipx install .``, with pipx's homes under tmp_path."""
    checkout = _checkout(tmp_path / "checkout")
    home = tmp_path / "pipx"
    env = _offline_env(
        dist.wheels,
        PIP_FIND_LINKS=f"{dist.wheels} {_pip_wheel()}",
        PIPX_HOME=str(home),
        PIPX_BIN_DIR=str(home / "bin"),
        PIPX_MAN_DIR=str(home / "man"),
        PIPX_DEFAULT_PYTHON=getattr(sys, "_base_executable", sys.executable),
    )
    _run([str(BIN / "pipx"), "install", "."], env, checkout)
    script = home / "bin" / SCRIPT
    proc = _run([str(script), "--version"], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert proc.stdout.strip() == f"{SCRIPT} {VERSION}", proc.stdout
    listed = _run([str(BIN / "pipx"), "list", "--short"], env, tmp_path)
    assert f"{NAME} {VERSION}" in listed.stdout, listed.stdout
