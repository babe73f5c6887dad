"""Podman 5.8 (compat API 1.44) from Debian forky, in a debootstrapped chroot, for the tests.

Podman 5 needs a newer glibc than Debian 12's, so it is not unpacked beside the system as
Docker 26.1 is: ``debootstrap --variant=minbase --include=podman,runc,conmon forky`` (with
the ``sid`` script, since bookworm's debootstrap has none for forky) makes a root filesystem
in the test cache, from the Debian mirror this machine already uses. Nothing is installed
into the system. Each Podman 5.8 the harness starts runs in an overlay of that cached tree
(tests/harness/podman.py ``PodmanBuild``), so the cache is never written to.

Run ``python -m tests.harness.podman5`` to make it ahead of the tests (``scripts/test``
does); the harness makes it on first use otherwise.
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

from tests.harness.baseimage import CACHE_DIR, DEBOOTSTRAP, _locked, debian_mirror

VERSION = "5.8"
SUITE = "forky"
PACKAGES = ("podman", "runc", "conmon")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SCRIPT = Path("/usr/share/debootstrap/scripts/sid")  # bookworm's debootstrap has no forky
FORMAT = 1  # part of the cache key: bump when the layout below changes
# Dropped from the tree once made (relative paths; globs allowed)
TRIM = ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*",
        "usr/share/man/*", "usr/share/locale/*")  # fmt: skip


def unavailable() -> str | None:
    """``None`` when the chroot can be made (or is cached) here, else a one-line reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Podman 5.8 chroot needs root (not running as uid 0)"
    if not os.access(DEBOOTSTRAP, os.X_OK):
        return f"{DEBOOTSTRAP} not found (apt-get install debootstrap)"
    if not SCRIPT.is_file():
        return f"{SCRIPT} not found (debootstrap's sid script makes the forky chroot)"
    if not KEYRING.is_file():
        return f"{KEYRING} not found (Debian's debian-archive-keyring package)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem (each Podman 5.8 runs in an overlay)"
    return None


def _key(mirror: str) -> str:
    blob = json.dumps([FORMAT, SUITE, sorted(PACKAGES), sorted(TRIM), mirror])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _versions(root: Path) -> dict[str, str]:
    """The installed versions of PACKAGES, from the chroot's dpkg status."""
    found: dict[str, str] = {}
    for stanza in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[:1] != " "
        )
        if fields.get("Package") in PACKAGES and "installed" in fields.get("Status", ""):
            found[fields["Package"]] = fields.get("Version", "")
    return found


def _trim(root: Path) -> None:
    for pattern in TRIM:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def fetch(cache_dir: Path = CACHE_DIR, mirror: str | None = None) -> Path:
    """The cached chroot's root directory, debootstrapped first when missing (~2-4 min)."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"cannot make the Podman {VERSION} chroot: {reason}")
    mirror = mirror or debian_mirror()
    dest = cache_dir / f"podman-{SUITE}-{_key(mirror)}"
    with _locked(cache_dir / ".podman5.lock"):
        if (dest / "manifest.json").is_file():
            return dest / "root"
        work = Path(tempfile.mkdtemp(prefix="podman5-", dir=cache_dir))
        try:
            root = work / "root"
            print(f"[podman5] debootstrap {SUITE} with {','.join(PACKAGES)} from {mirror}",
                  file=sys.stderr, flush=True)  # fmt: skip
            started = time.monotonic()
            proc = subprocess.run(
                [DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                 f"--keyring={KEYRING}", SUITE, str(root), mirror, str(SCRIPT)],
                capture_output=True, text=True, timeout=1800, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                log = root / "debootstrap/debootstrap.log"
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
                raise RuntimeError(
                    f"debootstrap {SUITE} failed (exit {proc.returncode}):\n"
                    f"{proc.stderr[-3000:]}\n{tail}"
                )
            seconds = time.monotonic() - started
            _trim(root)
            versions = _versions(root)
            if sorted(versions) != sorted(PACKAGES):
                raise RuntimeError(f"debootstrap installed {sorted(versions)}, not {PACKAGES}")
            manifest = {
                "suite": SUITE,
                "mirror": mirror,
                "versions": versions,
                "debootstrap_seconds": round(seconds, 1),
                "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest / "root"


def manifest(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root.parent / "manifest.json").read_text())
    return data


def main() -> int:
    started = time.monotonic()
    root = fetch()
    versions = ", ".join(f"{k} {v}" for k, v in sorted(_versions(root).items()))
    print(
        f"Podman {VERSION} for the tests: {versions} in {root} ({time.monotonic() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
