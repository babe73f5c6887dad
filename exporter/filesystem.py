"""The exporter's own measurement of the filesystem that holds the engine's data root.

Only where that filesystem is visible to the exporter: ``auto`` measures the engine's
data root (from /info) when the engine is on a local unix socket and the path exists
here; a path measures that path (the data root as mounted into the exporter's
container); ``off`` measures nothing. A remote engine's data root is never looked up
locally: a path of the same name here is another machine's disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

AUTO = "auto"
OFF = "off"


@dataclass(frozen=True)
class FilesystemUsage:
    size: int  # bytes
    avail: int  # bytes available to unprivileged users, as node_exporter's avail_bytes


def data_root_path(setting: str, engine_host: str, data_root: str) -> str | None:
    """Where to measure, or None when the data root's filesystem is not visible here."""
    if setting == OFF:
        return None
    if setting != AUTO:
        return setting
    if not engine_host.startswith("unix://") or not data_root:
        return None
    return data_root if os.path.isdir(data_root) else None


def measure(path: str) -> FilesystemUsage:
    """statvfs of ``path``; OSError when it cannot be measured."""
    st = os.statvfs(path)
    return FilesystemUsage(size=st.f_blocks * st.f_frsize, avail=st.f_bavail * st.f_frsize)
