"""Benchmark: the figures of issue 20 (hardening, second round), measured on the exporter.

Run: .venv/bin/python -m tests.bench_hardening [tls] [fleet] [auth] [workers]

- tls: 2,000 silent TCP connections to the TLS listener (connection limit 1,000): the
  exporter's RSS before, at its peak and 10 s after they close; its open files at the peak;
  whether a normal TLS scrape is served during the flood; then 500 TLS clients that never
  read a 1.7 MB answer, RSS per client.
- fleet: eight whole-fleet changes (every target renamed) of a 300-target config on
  stand-in engines: open files and RSS after the first load and after each change.
- auth: 20 clients sending wrong passwords for 10 s: the authenticated scrape's median
  against its idle median, and the count of 503s; then the interleaved medians of a known
  user with a wrong password and an unknown user (cost 12 hashes).
- workers: 100 targets, 20 hanging, 10 refusing, 10 answering garbage, default workers: the
  oldest good target's data, and how soon the hanging group is back once it answers.

Figures are printed, never asserted (the machine may be loaded); the tests assert bounds.
"""

from __future__ import annotations

import base64
import os
import resource
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import requests

from exporter.webconfig import BasicAuth
from tests.support.certs import make_pki
from tests.support.env import clean_env
from tests.support.fake_engine import bulk_engine, synthetic_engine
from tests.support.process import ExporterProcess, free_port

OFFLINE = ("--docker.host", "tcp://127.0.0.1:9", "--collect.disk-usage-interval", "0")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


class Peak:
    """Samples a value of a process every 0.1 s in a thread; the highest seen."""

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.read())
            except OSError:
                return
            time.sleep(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def bench_tls(work: Path) -> None:
    raise_nofile()
    pki = make_pki(work / "pki")
    web = work / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    engine = bulk_engine(3000, 3000)  # a /metrics answer of about 1.7 MB
    exp = ExporterProcess(
        ("--docker.host", engine.url, "--collect.disk-usage-interval", "0",
         "--web.config.file", str(web)),
        work / "tls.log", env=clean_env(),
    )  # fmt: skip
    url = f"https://127.0.0.1:{exp.port}/metrics"
    try:
        wait_listening(exp.port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = requests.get(url, verify=str(pki.ca), timeout=30)
            if b"docker_up 1.0" in answer.content:
                break
            time.sleep(0.5)
        size = len(answer.content)
        time.sleep(1)
        base = rss_mb(exp.pid)
        rss, files = Peak(lambda: rss_mb(exp.pid)), Peak(lambda: open_files(exp.pid))
        silent = []
        for _ in range(2000):
            silent.append(socket.create_connection(("127.0.0.1", exp.port), timeout=10))
        time.sleep(2)
        scrape = requests.get(url, verify=str(pki.ca), timeout=30).status_code
        for sock in silent:
            sock.close()
        peak, peak_files = rss.stop(), files.stop()
        time.sleep(10)
        after = rss_mb(exp.pid)
        print(
            f"tls: 2000 silent connections: RSS {base:.0f} MB before, peak {peak:.0f} MB"
            f" (+{peak - base:.0f}), {after:.0f} MB 10 s after they closed"
            f" (+{after - base:.0f}); open files at peak {peak_files:.0f} (limit 1000);"
            f" a TLS scrape during the flood: {scrape}"
        )
        # clients that complete the handshake, ask for the answer and never read it
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        base = rss_mb(exp.pid)
        readers = []
        for _ in range(500):
            raw = socket.create_connection(("127.0.0.1", exp.port), timeout=10)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(tls)
        time.sleep(3)
        held = rss_mb(exp.pid)
        print(
            f"tls: 500 clients that never read a {size / 1e6:.1f} MB answer:"
            f" +{held - base:.0f} MB, {(held - base) * 1024 / 500:.0f} KB each"
        )
        for tls in readers:
            tls.close()
    finally:
        exp.stop()
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    # each in a fresh exporter: memory freed by the clients above would hide the cost
    idle = {}
    for name, flags, ctx_or_none in (
        ("tls", ("--web.config.file", str(web)), ctx),
        ("plain", (), None),
    ):
        fresh = ExporterProcess(
            ("--docker.host", engine.url, "--collect.disk-usage-interval", "0", *flags),
            work / f"idle-{name}.log", env=clean_env(),
        )  # fmt: skip
        try:
            wait_listening(fresh.port)
            time.sleep(2)
            idle[name] = idle_connection_kb(fresh.pid, fresh.port, ctx_or_none)
        finally:
            fresh.stop()
    engine.close()
    tls_idle, plain_idle = idle["tls"], idle["plain"]
    print(
        f"tls: 500 keep-alive connections idle after one request: {tls_idle:.0f} KB each over"
        f" TLS, {plain_idle:.0f} KB each over plain HTTP ({tls_idle / plain_idle:.1f}x)"
    )


def idle_connection_kb(pid: int, port: int, ctx: ssl.SSLContext | None) -> float:
    """The exporter's RSS per connection kept open after one answered request."""
    base = rss_mb(pid)
    socks = []
    for _ in range(500):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(4096)
        socks.append(sock)
    time.sleep(2)
    held = rss_mb(pid)
    for sock in socks:
        sock.close()
    return (held - base) * 1024 / 500


def write_fleet(path: Path, prefix: str, urls: list[str], n: int) -> None:
    lines = ["defaults:", "  collect_interval: 15s", "  disk_usage_interval: 0", "targets:"]
    for i in range(n):
        lines += [f"  - name: {prefix}{i}", f"    host: {urls[i % len(urls)]}"]
    path.write_text("\n".join(lines) + "\n")


def bench_fleet(work: Path) -> None:
    raise_nofile()
    engines = [synthetic_engine() for _ in range(10)]
    urls = [e.url for e in engines]
    path = work / "fleet.yml"
    write_fleet(path, "a", urls, 300)
    exp = ExporterProcess(
        ("--config.file", str(path), "--config.watch-interval", "0"), work / "fleet.log",
        env=clean_env(),
    )  # fmt: skip
    try:
        wait_listening(exp.port)
        time.sleep(20)  # every target collected once
        first = open_files(exp.pid), rss_mb(exp.pid)
        print(f"fleet: 300 targets loaded: {first[0]} open files, RSS {first[1]:.0f} MB")
        worst = first[0]
        for change in range(1, 9):
            write_fleet(path, f"c{change}x", urls, 300)
            started = time.monotonic()
            os.kill(exp.pid, 1)  # SIGHUP
            while "reloaded" not in exp.log(5) and time.monotonic() - started < 60:
                time.sleep(0.1)
            time.sleep(16)  # a collection interval: every new target collected
            files, rss = open_files(exp.pid), rss_mb(exp.pid)
            worst = max(worst, files)
            print(f"fleet: change {change}: {files} open files, RSS {rss:.0f} MB")
        print(f"fleet: open files at most {worst / first[0]:.2f}x those after the first load")
    finally:
        exp.stop()
        for engine in engines:
            engine.close()


def timed_get(url: str, auth: tuple[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    status = requests.get(url, auth=auth, timeout=30).status_code
    return time.perf_counter() - started, status


def bench_auth(work: Path) -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=12)).decode()
    web = work / "auth.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exp = ExporterProcess((*OFFLINE, "--web.config.file", str(web)), work / "auth.log",
                          env=clean_env())  # fmt: skip
    url = f"http://127.0.0.1:{exp.port}/metrics"
    good = ("prometheus", "secret")
    try:
        wait_listening(exp.port)
        timed_get(url, good)  # the one bcrypt check of the good password
        idle = [timed_get(url, good)[0] for _ in range(50)]
        stop = threading.Event()

        def stranger(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                requests.get(url, auth=("prometheus", f"guess-{n}-{i}"), timeout=30)

        threads = [threading.Thread(target=stranger, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        busy: list[tuple[float, int]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy.append(timed_get(url, good))
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        idle_median = statistics.median(idle) * 1000
        busy_median = statistics.median(t for t, _ in busy) * 1000
        print(
            f"auth: authenticated scrape median {idle_median:.1f} ms idle,"
            f" {busy_median:.1f} ms under 20 wrong-password clients"
            f" ({busy_median / idle_median:.1f}x); {len(busy)} scrapes,"
            f" {sum(1 for _, s in busy if s == 503)} answered 503,"
            f" {sum(1 for _, s in busy if s != 200)} not 200"
        )
        known: list[float] = []
        unknown: list[float] = []
        for i in range(15):  # interleaved, each password new: no cache answers
            known.append(timed_get(url, ("prometheus", f"wrong-{i}"))[0])
            unknown.append(timed_get(url, (f"nobody{i}", "wrong"))[0])
        k, u = statistics.median(known) * 1000, statistics.median(unknown) * 1000
        print(
            f"auth: wrong password answer medians (cost 12, 1 s failure pause included):"
            f" known user {k:.0f} ms, unknown user {u:.0f} ms"
            f" ({abs(k - u) / max(k, u) * 100:.0f}% apart)"
        )
        # the bcrypt checks alone, in this process, interleaved
        auth = BasicAuth({"prometheus": hashed.encode()})
        known, unknown = [], []
        for i in range(15):
            for user, sink in (("prometheus", known), (f"nobody{i}", unknown)):
                header = "Basic " + base64.b64encode(f"{user}:wrong-{i}".encode()).decode()
                started = time.perf_counter()
                auth.check(header)
                sink.append(time.perf_counter() - started)
        k, u = statistics.median(known) * 1000, statistics.median(unknown) * 1000
        print(
            f"auth: bcrypt check medians (cost 12): known user {k:.0f} ms, unknown user"
            f" {u:.0f} ms ({abs(k - u) / max(k, u) * 100:.0f}% apart)"
        )
    finally:
        exp.stop()


def bench_workers(work: Path) -> None:
    """100 targets with the default workers and intervals: 60 good, 20 hanging, 10 refusing,
    10 answering garbage; the oldest good data over 90 s, then the hanging group recovers."""
    good = [synthetic_engine() for _ in range(6)]
    hanging = synthetic_engine()
    hanging.delays["/version"] = 3600.0  # until released
    garbage = synthetic_engine()
    garbage.set("/version", b"<html>not an engine</html>")
    refused = f"tcp://127.0.0.1:{free_port()}"
    hosts = (
        [("good", good[i % 6].url) for i in range(60)]
        + [("hang", hanging.url)] * 20
        + [("refused", refused)] * 10
        + [("garbage", garbage.url)] * 10
    )
    lines = ["targets:"]
    for i, (kind, url) in enumerate(hosts):
        lines += [f"  - name: {kind}{i}", f"    host: {url}"]
    path = work / "fleet.yml"
    path.write_text("\n".join(lines) + "\n")
    exp = ExporterProcess(("--config.file", str(path)), work / "workers.log", env=clean_env())

    def last_success() -> dict[str, float]:
        body = requests.get(exp.url + "/metrics", timeout=30).text
        found = {}
        for line in body.splitlines():
            if line.startswith("docker_exporter_target_last_success_timestamp_seconds{"):
                found[line.split('target="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return found

    try:
        wait_listening(exp.port)
        started = time.monotonic()
        oldest = 0.0
        while time.monotonic() - started < 90:
            time.sleep(3)
            last = last_success()
            goods = [last.get(f"good{i}") for i in range(60)]
            if time.monotonic() - started > 20 and all(goods):
                oldest = max(oldest, max(time.time() - t for t in goods if t))
        missing = sum(1 for i in range(60) if f"good{i}" not in last)
        print(
            f"workers: 100 targets (20 hanging, 10 refusing, 10 garbage), default workers:"
            f" oldest good data {oldest:.1f} s (interval 15 s), {missing} good never collected"
        )
        hanging.release.set()  # the hanging group recovers
        recovered_at = time.monotonic()
        while time.monotonic() - recovered_at < 60:
            last = last_success()
            if all(
                f"hang{i}" in last and last[f"hang{i}"] > time.time() - 60 for i in range(60, 80)
            ):
                break
            time.sleep(1)
        print(f"workers: the hanging group back in {time.monotonic() - recovered_at:.1f} s")
    finally:
        exp.stop()
        for engine in (*good, hanging, garbage):
            engine.close()


BENCHES = {"tls": bench_tls, "fleet": bench_fleet, "auth": bench_auth, "workers": bench_workers}


def main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(BENCHES):
            work = Path(tmp) / name
            work.mkdir()
            BENCHES[name](work)


if __name__ == "__main__":
    main(sys.argv[1:])
