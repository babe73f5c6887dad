"""Docker 26.1 (API 1.45) from Debian 13's packages, for the second engine of the matrix.

Debian 13 (trixie) ships ``docker.io`` 26.1 and ``containerd`` 1.7. They are fetched with
``apt-get download`` through a private apt directory whose sources list names the
``trixie`` suite on the Debian mirror this machine already uses, unpacked with
``dpkg-deb -x`` into the test cache, and started from there on Debian 12's libraries (with
the system's runc and docker-init). Nothing is installed into the system, and no apt state
of the user's is read or written.

Run ``python -m tests.harness.docker26`` to fetch it ahead of the tests (``scripts/test``
does); the harness fetches it on first use otherwise.
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
from pathlib import Path

from tests.harness.baseimage import CACHE_DIR, _locked, debian_mirror
from tests.harness.dockerd import EngineBuild

VERSION = "26.1"
SUITE = "trixie"
PACKAGES = ("docker.io", "containerd")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
FORMAT = 1  # part of the cache key: bump when the layout below changes


def unavailable() -> str | None:
    """``None`` when the packages can be fetched and unpacked here, else a one-line reason."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not found (a Debian system is needed for the Docker 26.1 engine)"
    if not KEYRING.is_file():
        return f"{KEYRING} not found (Debian's debian-archive-keyring package)"
    return None


def _key(mirror: str) -> str:
    blob = json.dumps([FORMAT, SUITE, sorted(PACKAGES), mirror])
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


def fetch(cache_dir: Path = CACHE_DIR, mirror: str | None = None) -> Path:
    """The unpacked packages' root directory, downloaded first when not cached."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"cannot fetch Docker {VERSION}: {reason}")
    mirror = mirror or debian_mirror()
    dest = cache_dir / f"docker-{SUITE}-{_key(mirror)}"
    with _locked(cache_dir / ".docker26.lock"):
        if (dest / "manifest.json").is_file():
            return dest / "root"
        work = Path(tempfile.mkdtemp(prefix="docker26-", dir=cache_dir))
        try:
            apt_dir, debs, root = work / "apt", work / "debs", work / "root"
            for sub in ("etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d",
                        "state", "lists/partial", "cache/archives/partial"):  # fmt: skip
                (apt_dir / sub).mkdir(parents=True)
            debs.mkdir()
            (apt_dir / "etc" / "sources.list").write_text(
                f"deb [signed-by={KEYRING}] {mirror} {SUITE} main\n"
            )
            print(f"[docker26] apt-get download {' '.join(PACKAGES)} from {mirror} {SUITE}",
                  file=sys.stderr, flush=True)  # fmt: skip
            _apt(apt_dir, "update")
            _apt(apt_dir, "download", *PACKAGES, cwd=debs)
            versions = {}
            for deb in sorted(debs.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
                fields = subprocess.run(
                    ["dpkg-deb", "-f", str(deb), "Package", "Version"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                info = dict(line.split(": ", 1) for line in fields.splitlines())
                versions[info["Package"]] = info["Version"]
            if sorted(versions) != sorted(PACKAGES):
                raise RuntimeError(f"apt-get download gave {sorted(versions)}, not {PACKAGES}")
            shutil.rmtree(apt_dir)
            shutil.rmtree(debs)
            manifest = {
                "suite": SUITE,
                "mirror": mirror,
                "versions": versions,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest / "root"


def engine_build(cache_dir: Path = CACHE_DIR) -> EngineBuild:
    """dockerd 26.1 with its containerd and shims first on its PATH."""
    root = fetch(cache_dir)
    return EngineBuild(VERSION, root / "usr/sbin/dockerd", (root / "usr/bin", root / "usr/sbin"))


def main() -> int:
    root = fetch()
    manifest = json.loads((root.parent / "manifest.json").read_text())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(manifest["versions"].items()))
    print(f"Docker {VERSION} for the tests: {versions} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
