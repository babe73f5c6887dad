"""Benchmark: candidate HTTP servers for /metrics under slow and greedy clients.

Run: .venv/bin/python -m tests.bench_servers [candidate ...]
Candidates: wsgiref (prometheus_client's own ThreadingWSGIServer), waitress, cheroot, and
exporter (this exporter's own server, on a stand-in engine of 10,000 containers). Each serves
a /metrics body of about 6 MB. For each attack (300 connections sending headers a byte a
second; 500 clients that never read the answer) it prints the threads, RSS and open files of
the server, and the latency of normal scrapes made meanwhile. waitress and cheroot are not
dependencies: install them into the venv to measure them.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.support.attack import non_readers, process_stats, scrape_latencies, slow_headers, summary
from tests.support.fake_engine import bulk_engine
from tests.support.process import exporter_command, free_port

BODY = "b'# HELP x\\n' + b'x{a=\"' + b'y' * 6_000_000 + b'\"} 1\\n'"
APP = f"""
BODY = {BODY}
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""
SERVERS = {
    "wsgiref": APP
    + """
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from wsgiref.simple_server import make_server
make_server("127.0.0.1", PORT, app, ThreadingWSGIServer, _SilentHandler).serve_forever()
""",
    "waitress": APP
    + """
import waitress
waitress.serve(app, host="127.0.0.1", port=PORT, threads=4, connection_limit=1000,
               backlog=1024, _quiet=True)
""",
    "cheroot": APP
    + """
from cheroot import wsgi
wsgi.Server(("127.0.0.1", PORT), app, numthreads=10, timeout=10,
            request_queue_size=1024).safe_start()
""",
}

# What each server is put through while it is scraped: the attack, its clients, its name.
Attack = Callable[[int, int], AbstractContextManager[object]]
ATTACKS: tuple[tuple[Attack, int, str], ...] = (
    (slow_headers, 300, "slow-header connections"),
    (non_readers, 500, "non-reading clients"),
)


def start(name: str, port: int, engine: str) -> subprocess.Popen[bytes]:
    if name == "exporter":
        argv = [*exporter_command(), f"--web.listen-address=127.0.0.1:{port}",
                "--docker.host", engine, "--collect.disk-usage-interval", "0",
                "--collect.interval", "1m"]  # fmt: skip
    else:
        argv = [sys.executable, "-c", SERVERS[name].replace("PORT", str(port))]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(names: list[str]) -> None:
    engine = bulk_engine(2000, 10000)  # a /metrics of about 6 MB
    for name in names:
        port = free_port()
        proc = start(name, port, engine.url)
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(300):
            try:
                if len(urllib.request.urlopen(url, timeout=2).read()) > 5_000_000:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        idle = process_stats(proc.pid)
        print(f"{name}: idle: {idle.threads} threads, {idle.rss_kib // 1024} MB")
        for i, (attack, n, what) in enumerate(ATTACKS):
            if i:
                time.sleep(1)  # the previous attack's connections are closed
            with attack(port, n):
                time.sleep(3)
                times = scrape_latencies(url, 10)
                s = process_stats(proc.pid)
            print(f"  {n} {what}: {s.threads} threads, {s.rss_kib // 1024} MB, "
                  f"{s.open_fds} fds; scrape {summary(times)}")  # fmt: skip
        proc.terminate()
        proc.wait()
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["wsgiref", "waitress", "cheroot"])
