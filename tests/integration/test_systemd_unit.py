"""deploy/systemd: the unit, its sysusers.d file and its environment file.

* ``systemd-analyze verify`` accepts the unit without a single warning, in a scratch root
  where ExecStart's path holds this checkout's real console script (``--root``: the
  machine's own /usr/local/bin is never touched);
* ``systemd-analyze security --offline`` rates its exposure (printed: docs/deployment.md
  names this test as the command that gives the figure);
* ``systemd-sysusers --root`` creates the service user in a scratch /etc, with the docker
  group as its only extra group;
(tests/unit/test_systemd_unit.py reads the files themselves.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import need
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

UNIT_DIR = REPO / "deploy" / "systemd"
UNIT = UNIT_DIR / "docker-inventory-exporter.service"
SYSUSERS = UNIT_DIR / "docker-inventory-exporter.sysusers"
USER = "docker-inventory-exporter"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
# The exposure score `systemd-analyze security` gives the unit (0 = locked down, 10 = none).
MAX_EXPOSURE = 1.5


def _tool(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        need(f"{name} not installed (Debian package systemd)")
        raise AssertionError("unreachable")
    return found


EXEC_START = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.M)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A scratch root with systemd's own units, the unit, and the console script in place."""
    if not SYSTEM_UNITS.is_dir():
        need(f"{SYSTEM_UNITS} missing (Debian package systemd)")
    assert EXEC_START, "no ExecStart"
    exec_path = EXEC_START.group(1)
    script = shutil.which("docker-inventory-exporter", path=str(Path(sys.executable).parent))
    assert script, "the console script is not installed in this venv"
    target = tmp_path / exec_path.lstrip("/")
    target.parent.mkdir(parents=True)
    shutil.copy2(script, target)
    shutil.copytree(SYSTEM_UNITS, tmp_path / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    (tmp_path / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy2(UNIT, tmp_path / "etc" / "systemd" / "system" / UNIT.name)
    return tmp_path


def test_systemd_analyze_verify_is_silent(root: Path) -> None:
    proc = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", UNIT.name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_verify_would_catch_a_typo(root: Path) -> None:
    """The check above has teeth: a misspelt directive is reported."""
    unit = root / "etc" / "systemd" / "system" / UNIT.name
    unit.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSytem="))
    proc = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", UNIT.name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Unknown key 'ProtectSytem'" in proc.stderr


def test_security_exposure(root: Path) -> None:
    proc = subprocess.run(
        [_tool("systemd-analyze"), "security", "--offline=true", f"--root={root}",
         "--no-pager", UNIT.name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout
    # the figure docs/deployment.md names this test for: run with -s to see it
    print(f"\nsystemd-analyze security: {UNIT.name} exposure {match.group(1)}", file=sys.stderr)
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_sysusers_creates_the_user_in_the_docker_group(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\ndocker:x:997:alice\n")
    proc = subprocess.run(
        [_tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    users = {line.split(":")[0]: line.split(":") for line in (etc / "passwd").read_text().split()}
    groups = {line.split(":")[0]: line.split(":") for line in (etc / "group").read_text().split()}
    user = users[USER]
    assert user[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    assert 0 < int(user[2]) < 1000  # a system uid
    assert user[3] == groups[USER][2]  # its own primary group
    assert groups["docker"][3].split(",") == ["alice", USER]
    assert groups["docker"][2] == "997"  # the existing group is joined, not recreated
