"""Build inputs for the container-image tests, made without any container registry.

The Dockerfile's default base (an official ``python:*-slim`` image) cannot be pulled here, so
the tests build FROM a local stand-in with the same shape: a Debian bookworm ``minbase``
root filesystem made by ``debootstrap`` with python3, python3-venv and ca-certificates,
trimmed of docs/man pages/locales/apt caches, imported with ``docker import``.

Both inputs are cached under ``CACHE_DIR`` (a stable directory, so reruns are fast) and
rebuilt from scratch when missing, so a fresh machine makes them inside the test run:

* the root filesystem tarball (``debootstrap`` from the Debian mirror apt uses here; ~1 min);
* the project's dependency wheels plus the PEP 517 build requirements, for an offline
  ``docker build`` (``pip wheel`` / ``pip download`` against the index pip is set up for).

Nothing site-specific goes into the image: the wheels travel in the build context, and the
build only reads them because the test passes ``PIP_NO_INDEX=1``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness.dockerd import Engine

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev venv and CI run 3.11+
    import tomli as tomllib

CACHE_DIR = Path(
    os.environ.get("DOCKER_INVENTORY_TEST_CACHE", "/var/cache/docker-inventory-exporter-tests")
)
SUITE = "bookworm"
PACKAGES: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
# Bump when the trimming or the image config below changes: it is part of the cache key.
ROOTFS_FORMAT = 1

# What ``docker import`` gets instead of a Dockerfile: the config the official python
# images set, so that ``${PATH}`` in our Dockerfile expands the same way on both.
IMPORT_CHANGES: tuple[str, ...] = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

# Dropped from the root filesystem (paths relative to it; globs allowed).
TRIM: tuple[str, ...] = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "var/log/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "dev/*",
    "proc/*",
    "sys/*",
    "tmp/*",
    "run/*",
)


def _timed_log(message: str) -> None:
    print(f"[baseimage {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (two test runs must not debootstrap into one dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: Sequence[str], timeout: float) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {proc.returncode}): {' '.join(args)}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )


# --------------------------------------------------------------------------- Debian mirror


def _sources_entries(text: str, deb822: bool) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of each ``deb`` source in a sources.list or a deb822 .sources file."""
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()
        return
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        parts = re.sub(r"\[[^\]]*\]", " ", line).split()
        if len(parts) >= 3:
            yield parts[1], [parts[2]]


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive that apt uses for ``SUITE`` on this machine.

    Here that is the plain ``http://deb.debian.org/debian`` of
    /etc/apt/sources.list.d/debian.sources (the route to it is set up outside the machine);
    the security archive and third-party repositories are skipped.
    """
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for uri, suites in _sources_entries(text, deb822=path.suffix == ".sources"):
            if SUITE in suites and uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


# --------------------------------------------------------------------------- root filesystem


def base_image_unavailable() -> str | None:
    """``None`` when the base image can be made here, else a one-line reason."""
    if os.geteuid() != 0:
        return "debootstrap needs root"
    if not os.access(DEBOOTSTRAP, os.X_OK):
        return f"{DEBOOTSTRAP} not found (apt-get install debootstrap)"
    if shutil.which("tar") is None:
        return "tar not found"
    return None


@dataclass(frozen=True)
class RootfsTarball:
    path: Path
    cached: bool  # True when it was already there
    seconds: float  # time this call spent (debootstrap + trim + tar, or just the lookup)
    debootstrap_seconds: float  # what debootstrap took when the tarball was made
    mirror: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _rootfs_key(mirror: str) -> str:
    blob = json.dumps([ROOTFS_FORMAT, SUITE, sorted(PACKAGES), sorted(TRIM), mirror])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _trim(root: Path) -> None:
    for pattern in TRIM:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def rootfs_tarball(cache_dir: Path = CACHE_DIR, mirror: str | None = None) -> RootfsTarball:
    """The cached ``debootstrap`` tarball, made first when it is missing."""
    started = time.monotonic()
    mirror = mirror or debian_mirror()
    key = _rootfs_key(mirror)
    tarball = cache_dir / f"rootfs-{SUITE}-{key}.tar"
    meta_path = tarball.with_suffix(".json")
    with _locked(cache_dir / ".rootfs.lock"):
        if tarball.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            return RootfsTarball(
                tarball, True, time.monotonic() - started, float(meta["debootstrap_seconds"]),
                mirror,
            )  # fmt: skip
        reason = base_image_unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot make the base image: {reason}")
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir))
        try:
            root = work / "root"
            _timed_log(f"debootstrap {SUITE} from {mirror} (cached afterwards in {cache_dir})")
            t0 = time.monotonic()
            _run(
                [DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                 SUITE, str(root), mirror],
                timeout=900,
            )  # fmt: skip
            debootstrap_seconds = time.monotonic() - t0
            _timed_log(f"debootstrap took {debootstrap_seconds:.0f}s")
            _trim(root)
            partial = work / "rootfs.tar"
            _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                 timeout=300)  # fmt: skip
            os.replace(partial, tarball)
            meta_path.write_text(
                json.dumps(
                    {
                        "suite": SUITE,
                        "packages": list(PACKAGES),
                        "mirror": mirror,
                        "debootstrap_seconds": round(debootstrap_seconds, 1),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                    indent=2,
                )
                + "\n"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return RootfsTarball(
            tarball, False, time.monotonic() - started, debootstrap_seconds, mirror
        )


@dataclass(frozen=True)
class BaseImage:
    name: str
    tarball: RootfsTarball
    import_seconds: float


def import_base_image(engine: Engine, name: str, cache_dir: Path = CACHE_DIR) -> BaseImage:
    """``docker import`` the cached root filesystem as ``name`` on ``engine``."""
    tarball = rootfs_tarball(cache_dir)
    t0 = time.monotonic()
    changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
    engine.cli("import", *changes, str(tarball.path), name, timeout=300)
    return BaseImage(name, tarball, time.monotonic() - t0)


# --------------------------------------------------------------------------- wheels


def _project_key(project: Path) -> str:
    data = tomllib.loads((project / "pyproject.toml").read_text())
    relevant = {
        "build": data.get("build-system", {}).get("requires", []),
        "deps": data.get("project", {}).get("dependencies", []),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def _project_name(project: Path) -> str:
    name: str = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
    return re.sub(r"[-_.]+", "_", name).lower()


def dependency_wheels(project: Path, cache_dir: Path = CACHE_DIR) -> tuple[Path, bool]:
    """A directory of wheels for everything an offline build of ``project`` needs.

    That is its run-time dependencies (``pip wheel`` of the project, minus the project's own
    wheel, which the Dockerfile builds from source) and the PEP 517 build requirements
    (setuptools, wheel), for this interpreter's Python version: the same minor version as
    the Debian base image (bookworm: 3.11). Returns ``(directory, was_cached)``.
    """
    data = tomllib.loads((project / "pyproject.toml").read_text())
    build_requires: list[str] = data.get("build-system", {}).get("requires", [])
    target = cache_dir / f"wheels-{_project_key(project)}"
    with _locked(cache_dir / ".wheels.lock"):
        if (target / ".complete").is_file():
            return target, True
        shutil.rmtree(target, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache_dir))
        try:
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
            with tempfile.TemporaryDirectory() as src:
                # Only the metadata matters for resolving: build from a copy without caches.
                shutil.copy2(project / "pyproject.toml", src)
                shutil.copytree(
                    project / "exporter",
                    Path(src) / "exporter",
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
                _run([*pip, "wheel", "--quiet", "--wheel-dir", str(partial), src], timeout=600)
            _run([*pip, "download", "--quiet", "--only-binary", ":all:", "--dest", str(partial),
                  *build_requires], timeout=600)  # fmt: skip
            for own in partial.glob(f"{_project_name(project)}-*.whl"):
                own.unlink()
            (partial / ".complete").write_text("\n")
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target, False
