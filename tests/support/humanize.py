"""Sizes as the docker CLI prints them (go-units HumanSize: 4 significant digits, base 1000)."""

from __future__ import annotations

UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """`docker system df` prints 4 significant digits; `docker ps -s` prints 3."""
    i = 0
    while size >= 1000 and i < len(UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{UNITS[i]}"
