"""Slow and greedy HTTP clients, and what they cost the server: for the attack tests.

- ``slow_headers``: connections that send their request headers one byte at a time.
- ``non_readers``: clients that send a request and never read the answer.
- ``process_stats``: threads and resident memory of a process, from /proc.
- ``scrape_latencies``: the time of normal scrapes, one after another (for the benchmarks);
  ``timed_scrapes``: their time and body size (for the tests, which assert the size only).
"""

from __future__ import annotations

import socket
import ssl
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stats:
    threads: int
    rss_kib: int
    open_fds: int


def process_stats(pid: int) -> Stats:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        fields[name] = rest.split()
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return Stats(int(fields["Threads"][0]), int(fields["VmRSS"][0]), fds)


def _connect(port: int, context: ssl.SSLContext | None, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # A small receive window, so the kernel cannot absorb the answer for the client.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


@contextmanager
def slow_headers(
    port: int, count: int, every: float = 1.0, context: ssl.SSLContext | None = None
) -> Iterator[list[socket.socket]]:
    """``count`` connections sending ``GET /metrics`` headers one byte every ``every`` s."""
    socks: list[socket.socket] = []
    stop = threading.Event()
    for _ in range(count):
        with suppress(OSError):
            socks.append(_connect(port, context))
    request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100_000

    def drip() -> None:
        offset = 0
        while not stop.wait(every) and offset < len(request):
            for sock in list(socks):
                try:
                    sock.send(request[offset : offset + 1])
                except OSError:
                    socks.remove(sock)
            offset += 1

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


@contextmanager
def non_readers(
    port: int, count: int, path: str = "/metrics", context: ssl.SSLContext | None = None
) -> Iterator[list[socket.socket]]:
    """``count`` clients that request ``path`` and never read a byte of the answer."""
    socks: list[socket.socket] = []
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    for _ in range(count):
        with suppress(OSError):
            sock = _connect(port, context, rcvbuf=4096)
            sock.sendall(request)
            socks.append(sock)
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def scrape_latencies(
    url: str, count: int = 20, opener: Callable[[str], bytes] | None = None
) -> list[float]:
    """Seconds for each of ``count`` normal scrapes of ``url`` (a failure counts as 10 s)."""
    return [seconds for seconds, _ in timed_scrapes(url, count, opener)]


def timed_scrapes(
    url: str, count: int = 20, opener: Callable[[str], bytes] | None = None, timeout: float = 30
) -> list[tuple[float, int | str]]:
    """(seconds, body size) of each of ``count`` normal scrapes of ``url``, one after another.

    A failed scrape gives (10 s, what went wrong), so that an assertion on the sizes shows
    the reason. The timeout is generous: these scrapes check that an answer comes, whole, not
    how fast (a loaded machine stretches that).
    """

    def plain(target: str) -> bytes:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            return bytes(response.read())

    fetch = opener or plain
    results: list[tuple[float, int | str]] = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            size = len(fetch(url))
            results.append((time.perf_counter() - started, size))
        except OSError as exc:
            results.append((10.0, repr(exc)))
        time.sleep(0.05)
    return results


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms over {len(ordered)}"
