"""deploy/systemd, read as files: who the unit runs as, what its hardening leaves open, and
the environment file's flags. (tests/integration/test_systemd_unit.py runs systemd's own
tools on them.)"""

from __future__ import annotations

import re
import shlex

from exporter.cli import parse_config
from tests.support.paths import REPO

UNIT_DIR = REPO / "deploy" / "systemd"
UNIT = UNIT_DIR / "docker-inventory-exporter.service"
DEFAULTS = UNIT_DIR / "docker-inventory-exporter.default"
USER = "docker-inventory-exporter"


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


UNIT_KEYS = _directives(UNIT.read_text())


def test_runs_as_a_dedicated_user_in_the_docker_group() -> None:
    assert UNIT_KEYS["User"] == [USER] and UNIT_KEYS["Group"] == [USER]
    assert UNIT_KEYS["SupplementaryGroups"] == ["docker"]
    assert "DynamicUser" not in UNIT_KEYS
    # what would cut it off from the socket's group or from /etc certificate files
    assert "PrivateUsers" not in UNIT_KEYS
    assert "InaccessiblePaths" not in UNIT_KEYS
    assert UNIT_KEYS["ProtectSystem"] == ["strict"]  # /etc and /run stay readable
    families = UNIT_KEYS["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert UNIT_KEYS[key] == ["yes"], key
    assert UNIT_KEYS["CapabilityBoundingSet"] == [""]


def test_environment_file_flags_are_accepted() -> None:
    assert UNIT_KEYS["EnvironmentFile"] == [f"-/etc/default/{USER}"]
    assert UNIT_KEYS["ExecStart"] == ["/usr/local/bin/docker-inventory-exporter $ARGS"]
    values: dict[str, str] = {}
    for line in DEFAULTS.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z_]+", key), line
            values[key] = shlex.split(value)[0] if value else ""
    assert set(values) == {"ARGS"}
    config = parse_config(values["ARGS"].split(), {})
    assert (config.listen_host, config.listen_port, config.log_level) == ("", 9487, "info")
