"""Benchmark: one exporter watching 100 stand-in engines of about 500 containers each.

Run: .venv/bin/python -m tests.bench_fleet [engines] [containers] [hanging] [interval]
(defaults 100, 500, 10, 15s). The stand-in engines run in this process (loopback
HTTP servers answering recorded-shape JSON); ``hanging`` of them accept connections and
never answer. The exporter runs as its own process with --config.file and
--collect.workers 16. Reported:

- whether every live engine was collected in each interval (inventory requests per engine
  over three intervals, and the spread of their last-success times);
- scrape latency p50/p99 of /metrics?target= for one engine, over 500 sequential scrapes,
  and the same for a static server (its own process) serving the same bytes;
- the exporter's RSS and thread count.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from tests.support.fake_engine import FakeEngine
from tests.support.paths import load
from tests.support.process import exporter_command, free_port

STATIC_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = open(sys.argv[1], "rb").read()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"""


def engine_answers(index: int, n_containers: int) -> dict[str, bytes]:
    """One host's answers, pre-encoded: 50 images, ``n_containers`` containers."""
    base_i = load("synthetic/images-1.52.json")[0]
    base_c = load("synthetic/containers-1.52.json")
    images = [
        dict(base_i, Id=f"sha256:{index:016x}{i:048x}", RepoTags=[f"app{i}:v{index}"])
        for i in range(50)
    ]
    containers = [
        dict(base_c[i % len(base_c)], Id=f"{index:016x}{i:048x}", Names=[f"/svc{i}"],
             Image=f"app{i % 50}:v{index}", ImageID=f"sha256:{index:016x}{i % 50:048x}")
        for i in range(n_containers)
    ]  # fmt: skip
    return {
        "/version": json.dumps(load("synthetic/version-1.52.json")).encode(),
        "/info": json.dumps(load("docker-20.10/info.json")).encode(),
        "/images/json": json.dumps(images).encode(),
        "/containers/json": json.dumps(containers).encode(),
    }


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def latencies(url: str, n: int = 500) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        get(url)
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def main(n_engines: int = 100, n_containers: int = 500, n_hanging: int = 10,
         interval: float = 15.0) -> None:  # fmt: skip
    engines = [FakeEngine(engine_answers(i, n_containers)) for i in range(n_engines)]
    for engine in engines[:n_hanging]:
        engine.delays.update(dict.fromkeys(("/version", "/images/json", "/containers/json"), 3600))
    live = engines[n_hanging:]
    names = [f"host-{i:03d}" for i in range(n_engines)]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "fleet.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "defaults": {
                        "collect_interval": f"{interval:g}s",
                        "collect_timeout": "5s",
                        "disk_usage_interval": "0",
                    },
                    "targets": [{"name": n, "host": e.url} for n, e in zip(names, engines)],
                }
            )
        )
        log = Path(tmp) / "exporter.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*exporter_command(), f"--web.listen-address=127.0.0.1:{port}",
                 "--config.file", str(config), "--collect.workers", "16"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        static = None
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    own = get(f"{base}/metrics").decode()
                    up = sum(
                        1
                        for line in own.splitlines()
                        if line.startswith("docker_exporter_target_up{") and line.endswith(" 1.0")
                    )
                    if up == len(live):
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                raise SystemExit(f"not every live engine came up:\n{log.read_text()[-3000:]}")
            startup = time.monotonic()
            before = [e.count("/images/json") for e in live]
            time.sleep(3 * interval)
            per_engine = [e.count("/images/json") - b for e, b in zip(live, before)]
            window = time.monotonic() - startup
            own = get(f"{base}/metrics").decode()
            now = time.time()
            ages = [
                now - float(line.rsplit(" ", 1)[1])
                for line in own.splitlines()
                if line.startswith("docker_exporter_target_last_success_timestamp_seconds{")
            ]
            one = names[n_hanging]
            target_url = f"{base}/metrics?target={one}"
            body = get(target_url)
            exporter_lat = latencies(target_url)
            status = proc_status(proc.pid)

            static_port = free_port()
            body_file = Path(tmp) / "body"
            body_file.write_bytes(body)
            static = subprocess.Popen(
                [sys.executable, "-c", STATIC_SERVER, str(body_file), str(static_port)]
            )
            static_url = f"http://127.0.0.1:{static_port}/metrics"
            for _ in range(100):
                try:
                    get(static_url)
                    break
                except OSError:
                    time.sleep(0.1)
            static_lat = latencies(static_url)

            def pct(values: list[float], q: float) -> float:
                return values[min(len(values) - 1, int(q * len(values)))]

            print(f"engines: {n_engines} stand-ins x {n_containers} containers + 50 images,"
                  f" {n_hanging} hanging; interval {interval:g}s; 16 workers")  # fmt: skip
            print(f"inventory collections per live engine in {window:.0f}s"
                  f" ({window / interval:.1f} intervals): min {min(per_engine)},"
                  f" max {max(per_engine)}")  # fmt: skip
            print(f"age of the last success over {len(ages)} targets ({n_hanging} never):"
                  f" max {max(ages):.1f}s")  # fmt: skip
            print(f"exposition of one target: {len(body) / 1e3:.0f} kB")
            for what, lat in (
                (f"scrape /metrics?target={one}", exporter_lat),
                ("static server, same bytes", static_lat),
            ):
                print(f"{what}: p50 {statistics.median(lat):.2f} ms,"
                      f" p99 {pct(lat, 0.99):.2f} ms, max {lat[-1]:.2f} ms")  # fmt: skip
            print(f"exporter RSS {status['VmRSS'].strip()}, threads {status['Threads'].strip()}")
        finally:
            if static is not None:
                static.terminate()
                static.wait(10)
            proc.terminate()
            proc.wait(10)
            for engine in engines:
                engine.close()


if __name__ == "__main__":
    args = sys.argv[1:5]
    main(*(int(a) for a in args[:3]), *(float(a) for a in args[3:4]))
