"""Per-host alert thresholds: set by --alert.* flags, exported for the rules to compare against.

The rules in prometheus/alerts.yml hold each threshold's default (recording rule
``docker:alert_threshold``). A threshold set on a host's exporter (a flag, or the target's
``alert_<name>`` field in --config.file) is exported as
``docker_exporter_alert_threshold{threshold="<name>"}`` and replaces that default for the
host, so one rules file serves a fleet of differently sized hosts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GIB = 1024**3
_BYTES_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]i?B|B)?$", re.IGNORECASE)
_BYTE_UNITS: dict[str, int] = {
    "b": 1,
    **{f"{p}b": 1000 ** (i + 1) for i, p in enumerate("kmgtp")},
    **{f"{p}ib": 1024 ** (i + 1) for i, p in enumerate("kmgtp")},
}


@dataclass(frozen=True)
class Threshold:
    name: str  # the threshold label value, here and in alerts.yml
    kind: str  # "share" (0 to 1), "bytes" or "count"
    default: float  # the rules' default, used where the exporter exports none
    alerts: str  # the alerts that compare against it
    meaning: str

    @property
    def default_text(self) -> str:
        if self.kind == "bytes" and self.default % GIB == 0:
            return f"{self.default / GIB:g}GiB"
        return f"{self.default:g}"

    @property
    def key(self) -> str:
        """The field of a target (or of the defaults) in --config.file."""
        return "alert_" + self.name

    @property
    def flag(self) -> str:
        return "--alert." + self.name.removesuffix("_bytes").replace("_", "-")


THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        "image_disk_share",
        "share",
        0.7,
        "DockerImageDiskUsageHigh",
        "share of the data root's filesystem (or of the budget) that images and build cache"
        " may take",
    ),
    Threshold(
        "reclaimable_share",
        "share",
        0.2,
        "DockerImageDiskReclaimable",
        "share of the data root's filesystem (or of the budget) that prunable images and build"
        " cache may take",
    ),
    Threshold(
        "image_disk_budget_bytes",
        "bytes",
        50 * GIB,
        "DockerImageDiskUsageHigh, DockerImageDiskReclaimable, DockerImageDiskFillingUp",
        "bytes images and build cache may use where no filesystem capacity is known",
    ),
    Threshold(
        "dangling_images",
        "count",
        20,
        "DockerDanglingImagesPilingUp",
        "dangling images a host may keep",
    ),
    Threshold(
        "dangling_volumes_bytes",
        "bytes",
        10 * GIB,
        "DockerDanglingVolumesLarge",
        "bytes that volumes no container references may hold",
    ),
    Threshold(
        "idle_build_cache_bytes",
        "bytes",
        10 * GIB,
        "DockerBuildCacheIdle",
        "bytes of build cache unused for a week (168h) a host may keep",
    ),
    Threshold(
        "container_restarts",
        "count",
        3,
        "DockerContainerCrashLooping",
        "restarts of one container within 15 minutes before it counts as crash looping",
    ),
)
BY_NAME = {t.name: t for t in THRESHOLDS}


def parse_bytes(text: str, what: str) -> float:
    """'50GiB', '40GB', '1.5TiB' or plain bytes; ValueError with a one-line message."""
    match = _BYTES_RE.match(text.strip())
    if not match:
        raise ValueError(f"{what} '{text[:40]}' is not a size like 50GiB, 40GB or 1073741824")
    return float(match.group(1)) * float(_BYTE_UNITS[(match.group(2) or "b").lower()])


def parse_threshold(threshold: Threshold, text: str, what: str = "") -> float:
    """A flag's (or config file field's) text as the threshold's value; ValueError with a
    one-line message naming ``what`` (default: the flag) when it is out of its range."""
    what = what or threshold.flag
    if threshold.kind == "bytes":
        value = parse_bytes(text, what)
        if value <= 0:
            raise ValueError(f"{what} must be more than 0 bytes")
        return value
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} '{text[:40]}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} '{text}' is not a finite number")
    if threshold.kind == "share" and not 0 < value <= 1:
        raise ValueError(f"{what} '{text}' is not a share between 0 (excluded) and 1")
    if threshold.kind == "count" and (value < 0 or value != int(value)):
        raise ValueError(f"{what} '{text}' is not a whole number of 0 or more")
    return value
