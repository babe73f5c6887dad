"""Durations in Prometheus' syntax (``1h30m``, ``2d``, ``1w``, ``500ms``), and byte sizes.

Prometheus writes a duration as units from largest to smallest, each at most once:
``y`` (365 days), ``w``, ``d``, ``h``, ``m``, ``s``, ``ms``. Plain seconds (``15``) and one
decimal unit (``1.5s``), which earlier releases took, are still read.
"""

from __future__ import annotations

import re

_UNITS = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_PROMETHEUS = re.compile("".join(rf"(?:(?P<{u}>\d+){u})?" for u, _ in _UNITS))
_DECIMAL = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d|w|y)?")
_SIZE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(value: str) -> float | None:
    """Seconds, or None when ``value`` is not a duration. Signs are not durations."""
    value = value.strip()
    if not value:
        return None
    match = _PROMETHEUS.fullmatch(value)
    if match and any(match.groupdict().values()):
        return sum(float(match.group(u) or 0) * f for u, f in _UNITS)
    match = _DECIMAL.fullmatch(value)
    if match:
        factor = dict(_UNITS).get(match.group("unit") or "s", 1.0)
        return float(match.group("n")) * factor
    return None


def format_duration(seconds: float) -> str:
    """The shortest Prometheus spelling of ``seconds`` (to the millisecond)."""
    left = round(seconds * 1000)
    if left == 0:
        return "0s"
    parts = []
    for unit, factor in _UNITS:
        step = round(factor * 1000)
        if left >= step:
            parts.append(f"{left // step}{unit}")
            left %= step
    return "".join(parts)


def parse_size(value: str) -> int | None:
    """Bytes from ``64MiB``, ``100MB``, ``1GiB`` or a plain number; None when not a size."""
    match = _SIZE.fullmatch(value.strip())
    if not match:
        return None
    return int(float(match.group("n")) * _SIZE_UNITS[(match.group("unit") or "b").lower()])
