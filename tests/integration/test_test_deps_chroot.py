"""scripts/test-deps on a lagging Debian 12, not a fake dpkg: a ``debootstrap --variant=minbase
bookworm`` root (the harness's cached base image tarball, tests/harness/baseimage.py) where one
installed package is older than what a package the tests need depends on.

The chroot's apt sees one source only: a local flat repository of tiny packages built here
with ``dpkg-deb``, so the test needs no network and installs one small package:

* installed in the chroot: ``libditest-lagging 1.0`` (the lagging package, like the
  ``login``/``passwd`` one point release behind of the issue), ``runc 1.0`` (an engine part)
  and an empty ``busybox-static`` (so that the plan does not want it);
* in the repository: ``uidmap`` (ships ``newuidmap``; depends on ``libditest-lagging (>= 2.0)``),
  ``libditest-lagging 2.0``, ``podman`` (depends on ``runc (>= 1.1)``) and ``runc 1.1``.

Every other command the script looks for is an empty stand-in on the chroot's PATH, so the plan
wants only ``uidmap`` (then ``podman`` too, for the refusal). The script runs from a copy
inside the chroot, as root, as a user would run it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.baseimage import base_image_unavailable, rootfs_tarball
from tests.support.env import need
from tests.support.paths import REPO

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What scripts/test-deps looks for on PATH (the engine, and each need_command line), but
# uidmap's newuidmap and podman: read from the script, so a tool it comes to need is covered.
NEEDED = re.findall(r"^need_command (\S+) ", (REPO / "scripts/test-deps").read_text(), re.M)
STAND_INS = ("dockerd", "docker", *(c for c in NEEDED if c not in ("newuidmap", "podman")))


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _ok(args: list[str], timeout: float = 300) -> str:
    proc = _run(args, timeout)
    assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _deb(
    out: Path, name: str, version: str, depends: str = "", files: dict[str, str] | None = None
) -> Path:
    """A tiny ``Architecture: all`` package made with ``dpkg-deb --build``."""
    tree = out / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
               f"Maintainer: docker-inventory-exporter tests <tests@localhost>\n"
               f"Description: stand-in for the scripts/test-deps chroot test\n")  # fmt: skip
    if depends:
        control += f"Depends: {depends}\n"
    (tree / "DEBIAN" / "control").write_text(control)
    for path, text in (files or {f"usr/share/ditest/{name}": version}).items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755 if path.startswith("usr/bin/") else 0o644)
    deb = out / f"{name}_{version.replace(':', '%3a')}_all.deb"
    _ok(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)])
    return deb


def _packages_index(repo: Path) -> str:
    """The ``Packages`` file of a flat repository (what ``dpkg-scanpackages`` writes)."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = _ok(["dpkg-deb", "--field", str(deb)]).rstrip("\n")
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        size = deb.stat().st_size
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {size}\nSHA256: {digest}\n")
    return "\n".join(stanzas)


@pytest.fixture(scope="module")
def lagging_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need(base_image_unavailable())
    for tool in ("dpkg-deb", "dpkg-scanpackages", "chroot", "tar"):
        need(
            None if shutil.which(tool) else f"{tool} not found (Debian package dpkg-dev/coreutils)"
        )
    work = tmp_path_factory.mktemp("test-deps-chroot")
    root = work / "root"
    root.mkdir()
    try:
        _ok(["tar", "--numeric-owner", "-C", str(root), "-xf", str(rootfs_tarball().path)])
        os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
        (root / "dev/null").chmod(0o666)
        debs = work / "debs"
        debs.mkdir()
        installed = [_deb(debs, "libditest-lagging", "1.0"), _deb(debs, "runc", "1.0"),
                     _deb(debs, "busybox-static", "1:0+ditest1")]  # fmt: skip
        repo = root / "ditest-repo"
        repo.mkdir()
        for deb in (
            _deb(debs, "libditest-lagging", "2.0"),
            _deb(debs, "uidmap", "1:4.13+ditest1", "libditest-lagging (>= 2.0)",
                 {"usr/bin/newuidmap": "#!/bin/sh\nexit 0\n"}),
            _deb(debs, "podman", "4.3.1+ditest1", "runc (>= 1.1)"),
            _deb(debs, "runc", "1.1"),
        ):  # fmt: skip
            shutil.copy2(deb, repo)
        (repo / "Packages").write_text(_packages_index(repo))
        for path in [repo, *repo.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # apt reads it as _apt
        (root / "etc/apt/sources.list").write_text("deb [trusted=yes] file:/ditest-repo ./\n")
        for extra in (root / "etc/apt/sources.list.d").glob("*"):
            extra.unlink()
        setup = root / "ditest"
        setup.mkdir()
        for deb in installed:
            shutil.copy2(deb, setup)
        _ok(["chroot", str(root), "dpkg", "-i", *(f"/ditest/{d.name}" for d in installed)])
        for name in STAND_INS:
            stand_in = root / "usr/local/bin" / name
            stand_in.write_text("#!/bin/sh\nexit 0\n")
            stand_in.chmod(0o755)
        (root / "tmp").chmod(0o1777)
        _ok(["chroot", str(root), "apt-get", "update", "-qq"])  # the machine's package lists
        shutil.copy2(REPO / "scripts" / "test-deps", setup / "test-deps")
        yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _test_deps(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = ["env", "-i", f"PATH={CHROOT_PATH}", "LANG=C", "HOME=/root"]
    return _run(["chroot", str(root), *env, "bash", "/ditest/test-deps", *args], timeout=300)


def _version(root: Path, package: str) -> str:
    proc = _run(["chroot", str(root), "dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}",
                 package])  # fmt: skip
    return proc.stdout if proc.returncode == 0 and proc.stdout.startswith("ii") else "not installed"


def test_a_change_to_an_installed_engine_part_refuses_in_the_plan_and_the_install(lagging_root):
    """podman needs a newer runc: the plan says the install would refuse, and it does."""
    plan = _test_deps(lagging_root, "--plan")
    assert plan.returncode == 1, plan.stderr
    lines = plan.stdout.splitlines()
    assert [x for x in lines if x.startswith(("install ", "apt: "))] == [
        "install podman  # no podman on PATH",
        "install uidmap  # no newuidmap on PATH",
        "apt: upgrade libditest-lagging  # installed 1.0, apt wants 2.0",
        "apt: upgrade runc  # installed 1.0, apt wants 1.1",
        "apt: new podman  # 4.3.1+ditest1",
        "apt: new uidmap  # 1:4.13+ditest1",
    ]
    refusal = [
        "scripts/test: not installing: apt would replace this installed engine part: runc",
        "scripts/test: run it yourself if that is what you want: "
        "apt-get install --no-install-recommends podman uidmap",
    ]
    assert plan.stderr.splitlines() == refusal
    install = _test_deps(lagging_root)
    assert install.returncode == 1, install.stderr
    assert install.stderr.splitlines()[-2:] == refusal
    assert _version(lagging_root, "runc") == "ii 1.0"
    assert _version(lagging_root, "podman") == "not installed"
    assert _version(lagging_root, "libditest-lagging") == "ii 1.0"


def test_a_lagging_dependency_is_upgraded_and_said_in_the_plan_and_the_install(lagging_root):
    stand_in = lagging_root / "usr/local/bin/podman"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    plan = _test_deps(lagging_root, "--plan")
    assert plan.returncode == 0, plan.stderr
    assert [x for x in plan.stdout.splitlines() if x.startswith(("install ", "apt: "))] == [
        "install uidmap  # no newuidmap on PATH",
        "apt: upgrade libditest-lagging  # installed 1.0, apt wants 2.0",
        "apt: new uidmap  # 1:4.13+ditest1",
    ]
    assert plan.stderr == (
        "scripts/test: the install will upgrade these installed packages, which the new ones "
        "depend on: libditest-lagging\n"
    )
    assert _version(lagging_root, "libditest-lagging") == "ii 1.0"  # the plan changed nothing

    install = _test_deps(lagging_root)
    assert install.returncode == 0, install.stderr
    assert [x for x in install.stderr.splitlines() if x.startswith("scripts/test: ")] == [
        "scripts/test: about to install these Debian packages: uidmap (see the reasons above)",
        "scripts/test: upgrading these installed packages, which the new ones depend on: "
        "libditest-lagging",
        "scripts/test: installed uidmap",
    ]
    assert _version(lagging_root, "libditest-lagging") == "ii 2.0"
    assert _version(lagging_root, "uidmap") == "ii 1:4.13+ditest1"
    assert _version(lagging_root, "runc") == "ii 1.0"  # the engine part was left alone

    again = _test_deps(lagging_root, "--plan")
    assert again.returncode == 0, again.stderr
    assert "keep newuidmap  # /usr/bin/newuidmap" in again.stdout.splitlines()
    assert [x for x in again.stdout.splitlines() if x.startswith(("install ", "apt: "))] == []
