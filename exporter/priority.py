"""Scrapes first: a collection steps aside while a request is being answered.

One interpreter serves and collects. While a collection runs, a scrape waits for the
interpreter each time it needs it (up to the switch interval), and then shares it: its Python
work takes twice as long or more. So the server counts the requests it is answering (from a
request read and authenticated to its answer handed to the socket, not while it waits for a
client to read), and a collection's loops pass ``checkpoint`` between two objects (``paced``)
and between two steps: while any request is being answered, the collection waits, with the
interpreter free, until none is. It waits ``WAIT`` seconds at most, and then runs ``RUN``
seconds before it waits again; and a run of a job waits ``MAX_WAITED`` seconds in all at
most (``run_starts``), then goes on without waiting: requests that never pause (scrapers back
to back) slow a collection down, never to a halt, and never past its engine deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

WAIT = 0.002  # seconds a collection waits for the answers to end, at most
RUN = 0.0005  # then it runs that long without waiting
MAX_WAITED = 1.0  # seconds a run of a job waits in all, at most

_lock = threading.Lock()
_answering = 0  # requests being answered
_quiet = threading.Event()  # set when none is
_quiet.set()
_run_until = 0.0
_runs = threading.local()  # per thread: seconds waited since the run started


def _add(n: int) -> None:
    global _answering
    with _lock:
        _answering += n
        if _answering:
            _quiet.clear()
        else:
            _quiet.set()


@contextmanager
def answering() -> Iterator[None]:
    """Around the answer to one request: collections step aside meanwhile."""
    _add(1)
    try:
        yield
    finally:
        _add(-1)


@contextmanager
def waiting() -> Iterator[None]:
    """Inside ``answering``, while the answer waits for the client (to read it): collections
    need not step aside for that."""
    _add(-1)
    try:
        yield
    finally:
        _add(1)


def answers() -> int:
    """Requests being answered now."""
    return _answering


def run_starts() -> None:
    """At the start of a run of a job, on its thread: its checkpoints may wait, ``MAX_WAITED``
    in all. Checkpoints on any other thread never wait."""
    _runs.waited = 0.0


def checkpoint() -> None:
    """Between two steps of a collection: wait while a request is being answered."""
    global _run_until
    if not _answering:
        return
    waited: float | None = getattr(_runs, "waited", None)
    start = time.monotonic()
    # only a job's run waits: not a worker building a variant for the very request answered
    if waited is None or waited >= MAX_WAITED or start < _run_until:
        return
    quiet = _quiet.wait(WAIT)
    now = time.monotonic()
    _runs.waited = waited + (now - start)
    if not quiet:
        _run_until = now + RUN  # answers without a pause: a slice anyway


def paced(items: Iterable[T]) -> Iterator[T]:
    """``items``, with a ``checkpoint`` before each."""
    for item in items:
        if _answering:
            checkpoint()
        yield item
