"""Slow and greedy clients against the real exporter: every scrape is still answered, whole,
during the attack and once it stops, and threads, memory and open files stay bounded.

No latency is asserted here: a loaded machine (a laptop, a shared CI runner) stretches it
without anything being wrong. The figures (threads, RSS, scrape latency) are printed; run with
``-s`` to see them: ``.venv/bin/pytest tests/unit/test_http_attacks.py -s -q``. Latency under
attack is measured by the benchmark, tests/bench_servers.py.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.attack import (
    non_readers,
    process_stats,
    slow_headers,
    summary,
    timed_scrapes,
)
from tests.support.fake_engine import FakeEngine, bulk_engine
from tests.support.process import ExporterProcess, ManagedProcess, exporter_command, free_port
from tests.support.wait import wait_until

N_CONTAINERS = 3000  # a /metrics of about 1.5 MB: more than a socket buffer holds


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    fake = bulk_engine(300, N_CONTAINERS)
    yield fake
    fake.close()


# One collection, and nothing else that changes the answer's bytes between two scrapes (the
# tests compare each answer's length with the first one's): no df job, no swarm job (it runs,
# and publishes, on a non-manager too), no event stream.
ARGS = ("--collect.interval", "1m", "--collect.disk-usage-interval", "0",
        "--collect.swarm-interval", "0", "--no-collect.events")  # fmt: skip


@pytest.fixture
def exporter(run_exporter, engine) -> ExporterProcess:
    exp: ExporterProcess = run_exporter("--docker.host", engine.url, *ARGS)
    exp.wait_for(lambda s: s.get(("docker_images", frozenset())) == 300.0)
    return exp


BUSY = "HTTP Error 503"  # --web.max-requests (40) turning a request away: an answer too


def whole_answer(url: str, size: int, when: str) -> None:
    """Wait for a scrape answered with the whole exposition (a loaded machine may first have
    the attack's own requests to work through, and answer 503 meanwhile); say why if none."""
    last: list[int | str] = []

    def whole() -> bool:
        last[:] = [timed_scrapes(url, 1)[0][1]]
        return last[0] == size

    wait_until(whole, 60, what=f"a whole /metrics answer {when}",
               diagnostics=lambda: f"last scrape: {last}")  # fmt: skip


def check(name: str, exp_pid: int, url: str, idle_threads: int, idle_rss: int, size: int) -> None:
    """During the attack: a whole answer comes, then 20 scrapes are each answered (whole, or
    503 while the server has --web.max-requests in hand); threads and memory stay bounded."""
    whole_answer(url, size, "during the attack")
    scrapes = timed_scrapes(url, 20)
    times = [seconds for seconds, _ in scrapes]
    stats = process_stats(exp_pid)
    busy = sum(1 for _, n in scrapes if BUSY in str(n))
    print(
        f"\n{name}: {stats.threads} threads (idle {idle_threads}), RSS {stats.rss_kib // 1024} MB "
        f"(idle {idle_rss // 1024} MB), {stats.open_fds} open files; scrape {summary(times)}, "
        f"{busy} answered 503"
    )
    wrong = [n for _, n in scrapes if n != size and BUSY not in str(n)]
    assert wrong == [], "scrapes failed or were cut during the attack"
    assert stats.threads <= idle_threads + 4  # at most the rest of the worker pool
    assert stats.rss_kib < idle_rss + 64 * 1024


def answered_after(url: str, size: int) -> None:
    """Once the attack stops, scrapes are answered whole again (nothing left wedged)."""
    whole_answer(url, size, "after the attack")
    assert [n for _, n in timed_scrapes(url, 5)] == [size] * 5


def test_300_connections_sending_headers_a_byte_a_second(exporter):
    url = exporter.url + "/metrics"
    size = len(urllib.request.urlopen(url, timeout=10).read())
    assert size > 1_000_000
    idle = process_stats(exporter.pid)
    with slow_headers(exporter.port, 300) as socks:
        time.sleep(3)
        assert len(socks) == 300
        check("300 slow-header connections", exporter.pid, url, idle.threads, idle.rss_kib, size)
    answered_after(url, size)
    # the 10 s deadline for a request head closes them all
    wait_until(
        lambda: process_stats(exporter.pid).open_fds < idle.open_fds + 10, 30,
        what="the slow connections closed by the 10 s head deadline",
        diagnostics=lambda: f"{process_stats(exporter.pid).open_fds} open, {idle.open_fds} idle",
    )  # fmt: skip


def test_500_clients_that_never_read_the_answer(exporter):
    url = exporter.url + "/metrics"
    size = len(urllib.request.urlopen(url, timeout=10).read())
    idle = process_stats(exporter.pid)
    with non_readers(exporter.port, 500) as socks:
        time.sleep(3)
        assert len(socks) == 500
        check("500 non-reading clients", exporter.pid, url, idle.threads, idle.rss_kib, size)
    answered_after(url, size)


def test_200_concurrent_scrapes_all_answered(exporter):
    """A listen backlog of 5 made most of these wait for SYN retries or time out: the listen
    socket's backlog is read back from the kernel (``ss``), and every client gets an answer."""
    url = exporter.url + "/"  # the landing page: answered by the workers, as scrapes are
    times: list[float] = []
    failures: list[BaseException] = []
    busy: list[int] = []
    start = threading.Barrier(200)

    def scrape() -> None:
        start.wait()
        began = time.perf_counter()
        try:
            urllib.request.urlopen(url, timeout=30).read()  # generous: answered, not fast
            times.append(time.perf_counter() - began)
        except urllib.error.HTTPError as exc:  # --web.max-requests (40) answers 503 beyond
            assert exc.code == 503
            busy.append(exc.code)
            times.append(time.perf_counter() - began)
        except OSError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(times)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(
        f"\n200 concurrent clients: p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms, "
        f"{len(busy)} answered 503 (--web.max-requests), {len(failures)} failed"
    )
    assert failures == []
    assert len(times) == 200  # every client answered: 200, or 503 beyond --web.max-requests
    assert listen_backlog(exporter.port) >= 200  # room for all of them in the accept queue


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``: ``ss -ltn`` shows it as Send-Q."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10, check=True).stdout  # fmt: skip
    (line,) = out.splitlines()
    return int(line.split()[2])


def test_idle_connections_at_the_open_file_limit_leave_metrics_reachable(engine, tmp_path):
    port = free_port()
    listen = f"--web.listen-address=127.0.0.1:{port}"
    argv = ["prlimit", "--nofile=1024:1024", *exporter_command(), listen,
            "--docker.host", engine.url, *ARGS]  # fmt: skip
    exp = ManagedProcess(argv, tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        exp.wait_until(
            lambda: len(urllib.request.urlopen(url, timeout=10).read()) > 1_000_000, 30,
            "listening, with the first collection done",
        )  # fmt: skip
        size = len(urllib.request.urlopen(url, timeout=10).read())
        with slow_headers(port, 1100, every=0.5) as socks:
            time.sleep(2)
            assert len(socks) >= 900  # the exporter closed the oldest to stay in its limit
            cpu_before = cpu_seconds(exp.pid)
            scrapes = timed_scrapes(url, 10)
            time.sleep(1)
            cpu = cpu_seconds(exp.pid) - cpu_before
            stats = process_stats(exp.pid)
        times = [seconds for seconds, _ in scrapes]
        print(f"\n1100 idle connections at a 1024 file limit: {stats.open_fds} open files, "
              f"CPU {cpu:.2f} s over the scrapes; scrape {summary(times)}")  # fmt: skip
        wrong = [n for _, n in scrapes if n != size and BUSY not in str(n)]
        assert wrong == [], "scrapes failed at the file limit"
        answered_after(url, size)
        assert stats.open_fds < 1024
        assert cpu < 1.5  # no busy loop on a full file table
        log = exp.log(2000)
        assert log.count("connections open, the limit") == 1
        assert "cannot accept" not in log and "Traceback" not in log
    finally:
        exp.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0
