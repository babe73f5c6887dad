"""Newer dockerd releases from Debian's newer suites, for the engine matrix.

A release is described by a ``Release`` (its version, the Debian suite and the packages).
Its packages are fetched with ``apt-get download`` through a private apt directory whose
sources list names that suite on the Debian mirror this machine already uses, unpacked with
``dpkg-deb -x`` into the test cache, and started from there on Debian 12's libraries (with
the system's runc: a newer suite's runc needs a newer glibc). Nothing is installed into the
system, and no apt state of the user's is read or written.

* Docker 26.1 (API 1.45): Debian 13 (trixie)'s ``docker.io`` and ``containerd``; the tests
  drive it with the system's docker CLI (20.10).
* Docker 28.5 (API 1.51): Debian sid's ``docker.io``, ``containerd``, ``docker-cli`` and
  ``docker-buildx``; the tests drive it with its own CLI and BuildKit (``docker build`` is
  buildx there). It runs twice in the matrix: with the classic image store (``28.5``) and
  with the containerd image store (``28.5-containerd``, what Docker 29 makes the default).

Run ``python -m tests.harness.debian_docker`` to fetch them all ahead of the tests
(``scripts/test`` does); the harness fetches a release on first use otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.baseimage import CACHE_DIR, _locked, debian_mirror
from tests.harness.dockerd import SYSTEM_DOCKER, EngineBuild

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
FORMAT = 1  # part of the cache key: bump when the layout below changes


@dataclass(frozen=True)
class Release:
    """One dockerd release from Debian: its version (the test id), suite and packages;
    ``own_cli``: drive it with its own ``docker`` (and buildx plugin) instead of the system's."""

    version: str
    suite: str
    packages: tuple[str, ...]
    own_cli: bool = False

    @property
    def tag(self) -> str:
        return "docker" + self.version.split(".")[0]


DOCKER_26 = Release("26.1", "trixie", ("docker.io", "containerd"))
DOCKER_28 = Release(
    "28.5", "sid", ("docker.io", "containerd", "docker-cli", "docker-buildx"), own_cli=True
)
RELEASES = (DOCKER_26, DOCKER_28)
CONTAINERD_STORE = "-containerd"  # the version suffix of a build with the containerd store


def unavailable(release: Release) -> str | None:
    """``None`` when the packages can be fetched and unpacked here, else a one-line reason."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Docker {release.version} needs a Debian system)"
    if not KEYRING.is_file():
        return f"{KEYRING} not found (Debian's debian-archive-keyring package)"
    return None


def _key(release: Release, mirror: str) -> str:
    blob = json.dumps([FORMAT, release.suite, sorted(release.packages), mirror])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _apt(apt_dir: Path, *args: str, cwd: Path | None = None) -> None:
    """apt-get with every directory private to ``apt_dir`` (no system state read or written)."""
    options = {
        "Dir::Etc": apt_dir / "etc",
        "Dir::Etc::SourceList": apt_dir / "etc" / "sources.list",
        "Dir::Etc::SourceParts": apt_dir / "etc" / "sources.list.d",
        "Dir::Etc::Parts": apt_dir / "etc" / "apt.conf.d",
        "Dir::Etc::PreferencesParts": apt_dir / "etc" / "preferences.d",
        "Dir::State": apt_dir / "state",
        "Dir::State::Lists": apt_dir / "lists",
        "Dir::State::status": "/dev/null",
        "Dir::Cache": apt_dir / "cache",
        "Debug::NoLocking": "1",
        "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
    }
    argv = ["apt-get", "-q"]
    for name, value in options.items():
        if value != "":
            argv += ["-o", f"{name}={value}"]
    proc = subprocess.run(
        [*argv, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def fetch(release: Release, cache_dir: Path = CACHE_DIR, mirror: str | None = None) -> Path:
    """The unpacked packages' root directory, downloaded first when not cached."""
    reason = unavailable(release)
    if reason is not None:
        raise RuntimeError(f"cannot fetch Docker {release.version}: {reason}")
    mirror = mirror or debian_mirror()
    dest = cache_dir / f"docker-{release.suite}-{_key(release, mirror)}"
    with _locked(cache_dir / f".{release.tag}.lock"):
        if (dest / "manifest.json").is_file():
            return dest / "root"
        work = Path(tempfile.mkdtemp(prefix=f"{release.tag}-", dir=cache_dir))
        try:
            apt_dir, debs, root = work / "apt", work / "debs", work / "root"
            for sub in ("etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d",
                        "state", "lists/partial", "cache/archives/partial"):  # fmt: skip
                (apt_dir / sub).mkdir(parents=True)
            debs.mkdir()
            (apt_dir / "etc" / "sources.list").write_text(
                f"deb [signed-by={KEYRING}] {mirror} {release.suite} main\n"
            )
            print(f"[{release.tag}] apt-get download {' '.join(release.packages)} from {mirror} "
                  f"{release.suite}", file=sys.stderr, flush=True)  # fmt: skip
            _apt(apt_dir, "update")
            _apt(apt_dir, "download", *release.packages, cwd=debs)
            versions = {}
            for deb in sorted(debs.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
                fields = subprocess.run(
                    ["dpkg-deb", "-f", str(deb), "Package", "Version"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                info = dict(line.split(": ", 1) for line in fields.splitlines())
                versions[info["Package"]] = info["Version"]
            if sorted(versions) != sorted(release.packages):
                raise RuntimeError(
                    f"apt-get download gave {sorted(versions)}, not {release.packages}"
                )
            shutil.rmtree(apt_dir)
            shutil.rmtree(debs)
            manifest = {
                "suite": release.suite,
                "mirror": mirror,
                "versions": versions,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest / "root"


def engine_build(
    release: Release, cache_dir: Path = CACHE_DIR, *, containerd_store: bool = False
) -> EngineBuild:
    """dockerd of ``release`` with its containerd and shims first on its PATH (the system's
    runc stays: the suite's own is not unpacked); ``containerd_store``: with the containerd
    image store (``features.containerd-snapshotter`` in its config file)."""
    root = fetch(release, cache_dir)
    version = release.version + (CONTAINERD_STORE if containerd_store else "")
    if not release.own_cli:
        return EngineBuild(
            version, root / "usr/sbin/dockerd", (root / "usr/bin", root / "usr/sbin")
        )
    return EngineBuild(
        version,
        root / "usr/sbin/dockerd",
        (root / "usr/bin", root / "usr/sbin"),
        cli=root / "usr/bin/docker",
        cli_plugins=root / "usr/libexec/docker/cli-plugins",
        containerd_store=containerd_store,
    )


# Every dockerd the engine tests run on, by version (the test id docker-<version>).
ENGINE_VERSIONS = (
    SYSTEM_DOCKER.version,
    DOCKER_26.version,
    DOCKER_28.version,
    DOCKER_28.version + CONTAINERD_STORE,
)


def _release(version: str) -> Release:
    for release in RELEASES:
        if version in (release.version, release.version + CONTAINERD_STORE):
            return release
    raise ValueError(f"no Debian docker release for version {version!r}")


def build_unavailable(version: str) -> str | None:
    """Why the dockerd ``version`` (one of ``ENGINE_VERSIONS``) cannot be fetched here."""
    return None if version == SYSTEM_DOCKER.version else unavailable(_release(version))


def build_for(version: str, cache_dir: Path = CACHE_DIR) -> EngineBuild:
    """The ``EngineBuild`` of ``version`` (one of ``ENGINE_VERSIONS``), fetched if needed."""
    if version == SYSTEM_DOCKER.version:
        return SYSTEM_DOCKER
    return engine_build(
        _release(version), cache_dir, containerd_store=version.endswith(CONTAINERD_STORE)
    )


def main() -> int:
    for release in RELEASES:
        root = fetch(release)
        manifest = json.loads((root.parent / "manifest.json").read_text())
        versions = ", ".join(f"{k} {v}" for k, v in sorted(manifest["versions"].items()))
        print(f"Docker {release.version} for the tests: {versions} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
