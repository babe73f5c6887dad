"""The one polling loop of the suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float = 30.0,
    *,
    what: str = "condition",
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (OSError,),
    alive: Callable[[], bool] | None = None,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    An exception in ``ignore`` counts as "not yet". When ``alive`` says the thing being
    waited on has died, or the timeout passes, fail with ``what``, the last result and
    ``diagnostics()`` (a log tail, say).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if alive is not None and not alive():
            reason = "the process it depends on exited"
            break
        if time.monotonic() >= deadline:
            reason = f"not within {timeout:g}s"
            break
        time.sleep(interval)
    details = f"\n{diagnostics()}" if diagnostics else ""
    raise AssertionError(f"{what}: {reason} (last answer: {last!r}){details}")
