"""Benchmark: a big host (N images, M containers) on a stand-in engine.

Run: .venv/bin/python -m tests.bench_scale [images] [containers]
Reports the engine requests per collection, the collection time, the exposition size, and
scrape latency percentiles over 200 sequential scrapes of the real exporter process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.fake_engine import FakeEngine
from tests.support.paths import load
from tests.support.process import exporter_command, free_port


def main(n_images: int = 2000, n_containers: int = 10000) -> None:
    base_i = load("synthetic/images-1.52.json")[0]
    base_c = load("synthetic/containers-1.52.json")[0]
    images = [dict(base_i, Id=f"sha256:{i:064x}", RepoTags=[f"app{i}:v1"]) for i in range(n_images)]
    containers = [
        dict(base_c, Id=f"{i:064x}", Names=[f"/c{i}"], Image=f"app{i % n_images}:v1",
             ImageID=f"sha256:{i % n_images:064x}")
        for i in range(n_containers)
    ]  # fmt: skip
    fake = FakeEngine({"/version": load("synthetic/version-1.52.json"), "/images/json": images,
                       "/containers/json": containers})  # fmt: skip
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*exporter_command(), f"--web.listen-address=127.0.0.1:{port}",
                 "--docker.host", fake.url, "--collect.interval", "5s", "--collect.timeout", "4s",
                 "--collect.disk-usage-interval", "0"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            body = b""
            for _ in range(300):
                try:
                    body = urllib.request.urlopen(url, timeout=5).read()
                    if b"docker_up 1.0" in body:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            start = fake.count("/images/json") + fake.count("/containers/json")
            time.sleep(11)
            per_cycle = (fake.count("/images/json") + fake.count("/containers/json") - start) / 2
            lat = []
            for _ in range(200):
                t = time.perf_counter()
                body = urllib.request.urlopen(url, timeout=5).read()
                lat.append((time.perf_counter() - t) * 1000)
            text = body.decode()
            key = 'docker_exporter_collection_duration_seconds{job="inventory"}'
            duration = [ln for ln in text.splitlines() if ln.startswith(key)]
            lat.sort()
            print(f"objects: {n_images} images, {n_containers} containers")
            print(f"engine requests per collection: {per_cycle:.0f} (plus /version on connect)")
            print(f"collection: {duration[0].split()[-1]} s; exposition: {len(body) / 1e6:.1f} MB")
            print(f"scrape latency ms: p50 {statistics.median(lat):.1f}, p99 {lat[197]:.1f}, "
                  f"max {lat[-1]:.1f}")  # fmt: skip
        except OSError:
            print(log.read_text())
            raise
        finally:
            proc.terminate()
            proc.wait(10)
            fake.close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
