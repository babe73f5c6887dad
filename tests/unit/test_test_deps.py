"""scripts/test-deps, the test command's package step, on a fake machine.

The script decides from ``command -v`` (PATH) and ``dpkg-query``; here PATH holds only a
directory of stand-ins: empty executables for the programs "installed", a ``dpkg-query``
that answers from a list, and an ``apt-get`` that records its calls and plays back a dry run.
Nothing on the real machine is looked at or changed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / "scripts" / "test-deps"
BASH = shutil.which("bash") or "/bin/bash"

# Every command the script looks for, and the package Debian ships it in.
TOOLS = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "podman": "podman",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "debootstrap": "debootstrap",
    "docker-compose": "docker-compose",
    "openssl": "openssl",
    "newuidmap": "uidmap",
    "systemd-analyze": "systemd",
    "npm": "npm",
    "docker-registry": "docker-registry",
    "haproxy": "haproxy",  # tests/integration/test_socket_proxy.py (issue 20)
}
OTHER_PACKAGES = ("busybox-static", "ca-certificates")

FAKE_DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f='${db:Status-Abbrev}' PACKAGE
for last; do :; done
if grep -qx "$last" "$FAKE_DPKG_LIST"; then printf 'ii '; exit 0; fi
echo "dpkg-query: no packages found matching $last" >&2
exit 1
"""
FAKE_APT_GET = """#!/bin/sh
echo "apt-get $*" >>"$FAKE_APT_LOG"
echo "[apt-get $*]" >&2
case " $* " in
  *" --simulate "*) cat "$FAKE_APT_SIMULATION" ;;
esac
"""
FAKE_ID = '#!/bin/sh\n[ "$1" = -u ] && echo "${FAKE_UID:-0}"\n'
FAKE_PYTHON = "#!/bin/sh\nexit 0\n"  # "import ensurepip, venv" works


Machine = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    """``machine(commands, packages, mode="--plan", simulation="")`` runs the script."""

    def run(
        commands: set[str],
        packages: set[str],
        mode: str = "--plan",
        simulation: str = "",
        uid: int = 0,
    ) -> subprocess.CompletedProcess[str]:
        fakebin = tmp_path / "bin"
        shutil.rmtree(fakebin, ignore_errors=True)
        fakebin.mkdir()
        programs = {name: "#!/bin/sh\nexit 0\n" for name in commands}
        programs.update(
            {"dpkg-query": FAKE_DPKG_QUERY, "apt-get": FAKE_APT_GET, "id": FAKE_ID,
             "python3": FAKE_PYTHON}
        )  # fmt: skip
        for name, text in programs.items():
            (fakebin / name).write_text(text)
            (fakebin / name).chmod(0o755)
        for real in ("grep", "awk", "cat"):  # what the stand-ins and the install path use
            found = shutil.which(real)
            assert found, real
            (fakebin / real).symlink_to(found)
        (tmp_path / "dpkg.list").write_text("".join(f"{p}\n" for p in sorted(packages)))
        (tmp_path / "simulation").write_text(simulation)
        (tmp_path / "apt.log").write_text("")
        env = {
            "PATH": str(fakebin),
            "FAKE_DPKG_LIST": str(tmp_path / "dpkg.list"),
            "FAKE_APT_LOG": str(tmp_path / "apt.log"),
            "FAKE_APT_SIMULATION": str(tmp_path / "simulation"),
            "LANG": "C",
            "FAKE_UID": str(uid),
        }
        args = [BASH, str(SCRIPT), *([mode] if mode else [])]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=30,
                              check=False)  # fmt: skip

    return run


def _installs(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("install ")]


ALL_BUT_ENGINE = (set(TOOLS) - {"dockerd", "docker"}, {*OTHER_PACKAGES})


def test_docker_ce_present_means_no_docker_io(machine: Machine) -> None:
    commands, packages = ALL_BUT_ENGINE
    proc = machine(
        commands | {"dockerd", "docker"},
        packages | {"docker-ce", "docker-ce-cli", "containerd.io"},
    )
    assert _installs(proc) == []
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("keep dockerd")]
    assert line.endswith("/dockerd (docker-ce)"), line


@pytest.mark.parametrize("package", ["docker-ce", "moby-engine", "docker.io"])
def test_an_engine_package_without_dockerd_on_path_is_still_kept(
    machine: Machine, package: str
) -> None:
    """A non-root PATH may lack sbin: the package alone says an engine is there."""
    commands, packages = ALL_BUT_ENGINE
    proc = machine(commands, packages | {package})
    assert _installs(proc) == []
    assert f"keep dockerd  # package {package} is installed" in proc.stdout


def test_dockerd_from_elsewhere_is_used(machine: Machine) -> None:
    """A dockerd on PATH that no package owns (a static binary) counts as an engine."""
    commands, packages = ALL_BUT_ENGINE
    assert _installs(machine(commands | {"dockerd", "docker"}, packages)) == []


def test_no_engine_at_all_plans_docker_io_and_says_why(machine: Machine) -> None:
    commands, packages = ALL_BUT_ENGINE
    proc = machine(commands, packages)
    assert _installs(proc) == ["docker.io"]
    assert "install docker.io  # no Docker engine (dockerd) is installed" in proc.stdout


def test_fresh_machine_plans_every_package_once(machine: Machine) -> None:
    proc = machine(set(), set())
    expected = [*dict.fromkeys(TOOLS.values()), "busybox-static", "ca-certificates"]
    assert sorted(_installs(proc)) == sorted(expected)


def test_programs_from_other_sources_are_kept(machine: Machine) -> None:
    """prometheus from a release tarball, npm from NodeSource: on PATH, no package needed."""
    proc = machine(set(TOOLS), {*OTHER_PACKAGES})
    assert _installs(proc) == []
    assert "keep npm  # " in proc.stdout and "keep prometheus  # " in proc.stdout


def test_dynamic_busybox_is_not_replaced(machine: Machine) -> None:
    proc = machine(set(TOOLS), {"busybox", "ca-certificates"})
    assert _installs(proc) == []
    assert "skip busybox-static  # it would replace the installed busybox" in proc.stdout


def test_install_announces_before_apt_runs(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    proc = machine(commands, packages, mode="", simulation="Inst docker.io (20.10.24 Debian)\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    announce = lines.index("scripts/test: about to install these Debian packages: docker.io "
                           "(see the reasons above)")  # fmt: skip
    first_apt = next(i for i, line in enumerate(lines) if line.startswith("[apt-get"))
    assert announce < first_apt
    assert "install docker.io  # no Docker engine (dockerd) is installed" in proc.stdout
    assert (tmp_path / "apt.log").read_text().splitlines()[-1] == (
        "apt-get install -y -qq --no-remove --no-install-recommends docker.io"
    )


def test_nothing_is_installed_when_apt_would_remove(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    simulation = (
        "Remv docker-ce [5:27.3.1-1~debian.12~bookworm]\n"
        "Inst libseccomp2 [2.5.4-1+b3] (2.5.4-1+deb12u1 Debian:12)\n"
        "Inst docker.io (20.10.24 Debian:12)\n"
    )
    proc = machine(commands, packages, mode="", simulation=simulation)
    assert proc.returncode == 1
    assert (
        "scripts/test: not installing: apt would remove these installed packages: docker-ce\n"
        in (proc.stderr)
    )
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == [
        "apt-get update -qq",
        "apt-get install --simulate --no-install-recommends docker.io",
    ]


def test_an_installed_engine_part_is_never_upgraded(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    simulation = (
        "Inst runc [1.1.5+ds1-1] (1.1.5+ds1-1+deb12u1 Debian:12)\n"
        "Inst docker.io (20.10.24 Debian:12)\n"
    )
    proc = machine(commands, packages, mode="", simulation=simulation)
    assert proc.returncode == 1
    assert "scripts/test: not installing: apt would replace this installed engine part: runc\n" in (
        proc.stderr
    )
    assert len((tmp_path / "apt.log").read_text().splitlines()) == 2  # update and the dry run


def test_a_lagging_dependency_is_upgraded_and_said(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    simulation = (
        "Inst login [1:4.13+dfsg1-1+deb12u1] (1:4.13+dfsg1-1+deb12u2 Debian:12)\n"
        "Inst passwd [1:4.13+dfsg1-1+deb12u1] (1:4.13+dfsg1-1+deb12u2 Debian:12)\n"
        "Inst docker.io (20.10.24 Debian:12)\n"
    )
    proc = machine(commands, packages, mode="", simulation=simulation)
    assert proc.returncode == 0, proc.stderr
    assert (
        "scripts/test: upgrading these installed packages, which the new ones depend on: "
        "login passwd\n"
    ) in proc.stderr
    assert (tmp_path / "apt.log").read_text().splitlines()[-1] == (
        "apt-get install -y -qq --no-remove --no-install-recommends docker.io"
    )


def test_install_uses_no_remove(machine: Machine, tmp_path: Path) -> None:
    proc = machine(set(), set(), mode="", simulation="Inst podman (4.3.1 Debian:12)\n")
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert len(calls) == 3 and calls[0] == "apt-get update -qq"
    assert calls[1].startswith("apt-get install --simulate --no-install-recommends docker.io ")
    assert calls[2].startswith("apt-get install -y -qq --no-remove --no-install-recommends ")
    assert calls[1].split()[4:] == calls[2].split()[6:]  # the same packages


def test_nothing_to_do_calls_no_apt(machine: Machine, tmp_path: Path) -> None:
    proc = machine(set(TOOLS), {*OTHER_PACKAGES}, mode="")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "apt.log").read_text() == ""


LAGGING = (
    "Inst login [1:4.13+dfsg1-1+deb12u1] (1:4.13+dfsg1-1+deb12u2 Debian:12 [amd64])\n"
    "Inst uidmap (1:4.13+dfsg1-1+deb12u2 Debian:12 [amd64])\n"
    "Conf login (1:4.13+dfsg1-1+deb12u2 Debian:12 [amd64])\n"
)


def test_the_plan_shows_apt_s_dry_run_upgrades_included(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    proc = machine(commands - {"newuidmap"} | {"dockerd", "docker"}, packages, simulation=LAGGING)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-3:] == [
        "install uidmap  # no newuidmap on PATH",
        "apt: upgrade login  # installed 1:4.13+dfsg1-1+deb12u1, apt wants 1:4.13+dfsg1-1+deb12u2",
        "apt: new uidmap  # 1:4.13+dfsg1-1+deb12u2",
    ]
    assert proc.stderr == (
        "scripts/test: the install will upgrade these installed packages, which the new ones "
        "depend on: login\n"
    )
    # a dry run only: no "apt-get update", no install
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "apt-get install --simulate --no-install-recommends uidmap"
    ]


def test_the_plan_shows_the_refusal_the_install_would_meet(machine: Machine) -> None:
    commands, packages = ALL_BUT_ENGINE
    simulation = (
        "Remv docker-ce [5:27.3.1-1~debian.12~bookworm]\nInst docker.io (20.10.24 Debian:12)\n"
    )
    proc = machine(commands, packages, simulation=simulation)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-2:] == [
        "apt: remove docker-ce",
        "apt: new docker.io  # 20.10.24",
    ]
    assert proc.stderr.splitlines() == [
        "scripts/test: not installing: apt would remove these installed packages: docker-ce",
        "scripts/test: run it yourself if that is what you want: "
        "apt-get install --no-install-recommends docker.io",
    ]


def test_the_plan_without_root_says_it_cannot_simulate(machine: Machine, tmp_path: Path) -> None:
    commands, packages = ALL_BUT_ENGINE
    proc = machine(commands, packages, simulation=LAGGING, uid=1000)
    assert proc.returncode == 0, proc.stderr
    assert _installs(proc) == ["docker.io"]
    assert "cannot ask apt for a dry run without root" in proc.stderr
    assert (tmp_path / "apt.log").read_text() == ""
