"""Environment handling: CI mode, missing dependencies, and environments for child processes."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Variables that would point a daemon, a client or the exporter somewhere else (or through a
# proxy). Tests set what they mean to test explicitly.
SCRUBBED_PREFIXES = ("DOCKER_", "CONTAINERD_", "ROOTLESSKIT_", "BUILDKIT_", "COMPOSE_")
SCRUBBED_NAMES = frozenset(
    {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "XDG_RUNTIME_DIR",
    }
)
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def need(reason: str | None) -> None:
    """Skip (or fail on CI) when a real dependency is missing; ``None`` means it is there."""
    if reason is None:
        return
    if ON_CI:
        pytest.fail(f"CI=true and the real dependency is unavailable: {reason}")
    pytest.skip(reason)


def clean_env(
    extra: Mapping[str, str] | None = None, *, drop_prefixes: tuple[str, ...] = ()
) -> dict[str, str]:
    """``os.environ`` without docker/containerd/compose/proxy settings, plus ``extra``.

    ``drop_prefixes`` removes more (e.g. the ``EXPORTER`` variables a compose file reads).
    PATH always holds the system directories, where the engine's helpers live.
    """
    prefixes = SCRUBBED_PREFIXES + drop_prefixes
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(prefixes) and k not in SCRUBBED_NAMES
    }
    path = env.get("PATH", "")
    for needed in SYSTEM_PATH:
        if needed not in path.split(":"):
            path = f"{path}:{needed}" if path else needed
    env["PATH"] = path
    if extra:
        env.update(extra)
    return env
