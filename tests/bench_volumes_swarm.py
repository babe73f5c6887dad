"""Benchmark: the cost of the volume, build cache and Swarm figures on big answers.

Run (a few seconds):

    .venv/bin/python -m tests.bench_volumes_swarm

Prints, for synthetic answers of the given sizes, the CPU time of parsing and deriving:
``/system/df`` volumes (``--volumes 50000``), BuildKit records in chains of 50 for the idle
figures (``--cache-records 20000``) and ``/services`` plus ``/tasks`` (``--services 1000
--tasks 20000``). Figures are reported, never asserted: the machine may be loaded.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from exporter.records import BuildCacheRecord, parse_disk_usage, parse_services, parse_tasks
from exporter.snapshot import build_disk_usage, build_swarm, summarize_build_cache

NOW = 1.8e9


def timed(what: str, run: Callable[[], object]) -> None:
    start = time.process_time()
    run()
    print(f"{what}: {time.process_time() - start:.3f}s CPU")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench_volumes_swarm", description=__doc__)
    p.add_argument("--volumes", type=int, default=50000)
    p.add_argument("--cache-records", type=int, default=20000)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=20000)
    args = p.parse_args()
    rng = random.Random(19)

    volumes = [
        {"Name": f"v{i}", "Driver": "local", "CreatedAt": "2026-11-27T18:05:16Z",
         "Labels": {"com.docker.compose.project": f"p{i % 100}"},
         "UsageData": {"Size": i, "RefCount": i % 2}}
        for i in range(args.volumes)
    ]  # fmt: skip
    timed(
        f"/system/df with {args.volumes} volumes, parsed and derived",
        lambda: build_disk_usage(parse_disk_usage({"Volumes": volumes}), NOW, ("volumes",)),
    )
    records = [
        BuildCacheRecord(f"r{i}", 1000, False, i % 7 == 0, "regular", NOW - 1e6,
                         NOW - rng.random() * 1e6, (f"r{i - 1}",) if i % 50 else ())
        for i in range(args.cache_records)
    ]  # fmt: skip
    timed(
        f"{args.cache_records} build cache records, states and idle figures",
        lambda: summarize_build_cache(records, NOW),
    )
    services = [
        {"ID": f"s{i}", "Spec": {"Name": f"svc{i}", "Mode": {"Replicated": {"Replicas": 3}}},
         "ServiceStatus": {"DesiredTasks": 3}}
        for i in range(args.services)
    ]  # fmt: skip
    tasks = [
        {"ServiceID": f"s{i % args.services}", "Status": {"State": "running"},
         "DesiredState": "running"}
        for i in range(args.tasks)
    ]  # fmt: skip
    timed(
        f"{args.services} services and {args.tasks} tasks, parsed and derived",
        lambda: build_swarm(parse_services(services), parse_tasks(tasks), NOW),
    )


if __name__ == "__main__":
    main()
