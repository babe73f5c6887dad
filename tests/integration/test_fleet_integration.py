"""One exporter watching a fleet of real engines.

- five targets in one process: the real dockerd over mutual TLS and over its unix socket, the
  real Podman, an address that refuses connections and one that never answers; each live
  target serves what a single-target exporter pointed at that engine serves;
- discovery from a context made by the real docker CLI and from a docker-machine store;
- a real Prometheus finding every engine through http_sd_configs on /targets, with the
  shipped relabelling, and the dashboard's queries answering per instance;
- two replicas behind two Prometheus servers sharding with hashmod: every engine is collected
  by exactly one replica.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.dockerd import Engine
from tests.harness.podman import (
    build_podman_scenario,
    build_unavailable,
    podman_build,
    start_podman,
)
from tests.support.env import clean_env, need
from tests.support.fake_engine import FakeEngine, synthetic_engine
from tests.support.paths import REPO
from tests.support.process import ExporterProcess, free_port
from tests.support.prometheus import Prometheus, RunPrometheus
from tests.support.promql import Samples, parse_samples, value
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

# A generous /system/df timeout: Podman's df walks its storage, and on a loaded machine took
# longer than 4 s, so that a target never got its disk usage series ("podman up" gave up).
SETTINGS = {
    "collect_interval": "1s",
    "collect_timeout": "900ms",
    "disk_usage_interval": "15s",
    "disk_usage_timeout": "15s",
}
FLAGS = (
    "--collect.interval", "1s", "--collect.timeout", "900ms",
    "--collect.disk-usage-interval", "15s", "--collect.disk-usage-timeout", "15s",
)  # fmt: skip
# Series whose values depend on when and how fast a process collected, not on the engine:
# compared by their label sets only. (A /system/df that dockerd answers after one caller's
# timeout, on a loaded machine, counts a failure in one process and not in the other.)
MOMENT = frozenset(
    {
        "docker_exporter_collection_duration_seconds",
        "docker_exporter_last_success_timestamp_seconds",
        "docker_exporter_collection_errors_total",
        "docker_exporter_collection_skipped_total",
        "docker_image_last_used_timestamp_seconds",  # the collection time while in use
        "docker_data_root_filesystem_avail_bytes",  # the host's free space, as of each run
    }
)


def write_config(path: Path, targets: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"defaults": SETTINGS, "targets": targets, **top}))
    return path


def tls_of(engine: Engine) -> dict[str, str]:
    return {f: str(engine.certs / f"{f}.pem") for f in ("ca", "cert", "key")}


def target_samples(exp: ExporterProcess, name: str) -> Samples:
    status, body, _ = exp.get(f"/metrics?target={name}")
    assert status == 200, (name, status, body)
    return parse_samples(body.decode())


def comparable(samples: Samples) -> tuple[dict[Any, float], set[Any]]:
    """The series and values that depend on the engine alone, and the other series' keys."""
    fixed = {
        k: v for k, v in samples.items() if k[0] not in MOMENT and not k[0].startswith("process_")
    }
    return fixed, {k for k in samples if k[0] in MOMENT}


def has(exp: ExporterProcess, name: str, check: Callable[[Samples], bool]) -> bool:
    return check(target_samples(exp, name))


def target_state(exp: ExporterProcess, name: str, *daemons: Any) -> str:
    """Why a wait on target ``name`` gave up: what the exporter serves for it, its log lines
    about it, and the engines' log tails (``daemons``: anything with ``log_tail()``)."""
    try:
        samples = target_samples(exp, name)
    except (AssertionError, OSError) as exc:
        served = f"/metrics?target={name}: {exc!r}"
    else:
        jobs = {
            dict(labels).get("collector"): v
            for (metric, labels), v in samples.items()
            if metric == "docker_exporter_collection_success"
        }
        disk = any(k[0] == "docker_disk_usage_bytes" for k in samples)
        served = (
            f"{name}: docker_up {value(samples, 'docker_up')}, collection_success {jobs}, "
            f"disk usage series {'present' if disk else 'absent'}"
        )
    mentions = [line for line in exp.log(2000).splitlines() if name in line][-10:]
    parts = [served, f"exporter log lines about {name}:", *mentions]
    for daemon in daemons:
        parts += [f"{type(daemon).__name__} log tail:", daemon.log_tail(15)]
    return "\n".join(parts)


def engine_up(samples: Samples) -> bool:
    return value(samples, "docker_up") == 1.0


def sized(samples: Samples) -> bool:
    return any(k[0] == "docker_container_rw_size_bytes" for k in samples)


@pytest.fixture
def hanging() -> Iterator[str]:
    """An address that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"


# The fleet's Podman target, paired with the Docker version rather than crossed with it: each
# Podman version is in the fleet once.
FLEET_PODMAN = {"20.10": "4.3"}  # every other Docker version: Podman 5.8


def test_five_targets_in_one_exporter(engine, scenario, run_exporter, tmp_path, hanging):
    version = FLEET_PODMAN.get(engine.build.version, "5.8")
    need(build_unavailable(version))
    pod = start_podman(build=podman_build(version))
    try:
        build_podman_scenario(pod)
        config = write_config(
            tmp_path / "fleet.yml",
            [
                {"name": "tls", "host": engine.tcp_url, "tls": tls_of(engine)},
                {"name": "unix", "host": engine.unix_url},
                {"name": "podman", "host": pod.unix_url},
                {"name": "refused", "host": f"tcp://127.0.0.1:{free_port()}"},
                {"name": "hanging", "host": hanging},
            ],
        )
        env = clean_env()
        fleet = run_exporter("--config.file", str(config), "--collect.workers", "4", env=env)
        tls = tls_of(engine)
        singles = {
            "tls": run_exporter(
                "--docker.host", engine.tcp_url, "--docker.tls-ca", tls["ca"],
                "--docker.tls-cert", tls["cert"], "--docker.tls-key", tls["key"], *FLAGS, env=env,
            ),
            "unix": run_exporter("--docker.host", engine.unix_url, *FLAGS, env=env),
            "podman": run_exporter("--docker.host", pod.unix_url, *FLAGS, env=env),
        }  # fmt: skip

        def complete(s: Samples) -> bool:
            return value(s, "docker_up") == 1.0 and any(
                k[0] == "docker_disk_usage_bytes" for k in s
            )

        daemons = {"tls": engine, "unix": engine, "podman": pod}
        for name, single in singles.items():
            wait_until(
                partial(has, fleet, name, complete), 60,
                what=f"{name} up, with its disk usage",
                diagnostics=partial(target_state, fleet, name, daemons[name]),
            )  # fmt: skip
            single.wait_for(complete, 60)

            def same(n: str = name, one: ExporterProcess = single) -> bool:
                # both collect every second from an engine nobody changes: equal once both
                # have collected after the last state change (a health check settling, say)
                return comparable(target_samples(fleet, n)) == comparable(one.samples())

            try:
                wait_until(same, 20, what=f"{name} equal", ignore=())
            except AssertionError:
                (a, a_keys), (b, b_keys) = (
                    comparable(target_samples(fleet, name)),
                    comparable(single.samples()),
                )
                diff = sorted(set(a.items()) ^ set(b.items()), key=str)
                raise AssertionError(f"{name}: {diff[:20]} {a_keys ^ b_keys}") from None
            fixed, _ = comparable(target_samples(fleet, name))
            assert value(fixed, "docker_images") is not None
        products = {
            n: dict(k[1]).get("product")
            for n in singles
            for k in target_samples(fleet, n)
            if k[0] == "docker_engine_info"
        }
        assert products == {
            "tls": "Docker Engine",
            "unix": "Docker Engine",
            "podman": "Podman Engine",
        }

        for dead in ("refused", "hanging"):
            s = target_samples(fleet, dead)
            assert value(s, "docker_up") == 0.0
            assert not [k for k in s if k[0].startswith(("docker_image", "docker_container"))]
        own = fleet.samples()
        assert {k[1] for k in own if k[0] == "docker_exporter_target_up"} == {
            frozenset({("target", n)}) for n in ("tls", "unix", "podman", "refused", "hanging")
        }
        assert value(own, "docker_exporter_target_up", target="hanging") == 0.0
        assert "hanging: inventory job: GET /version: no answer within 0.9s" in fleet.log()

        # the dead and hanging engines never slow a scrape or the other targets' collections
        last = "docker_exporter_last_success_timestamp_seconds"
        before = value(target_samples(fleet, "tls"), last, collector="inventory")
        # Every scrape is answered (target_samples asserts 200) and the tls target keeps
        # collecting; how fast is not asserted (a loaded machine stretches it).
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for name in ("tls", "unix", "podman", "refused", "hanging"):
                target_samples(fleet, name)
            time.sleep(0.1)
        wait_until(
            lambda: value(target_samples(fleet, "tls"), last, collector="inventory") != before,
            30, what="tls collected again beside the hanging and refused targets",
            diagnostics=partial(target_state, fleet, "tls", engine),
        )  # fmt: skip
    finally:
        pod.close()


def test_a_context_made_by_the_docker_cli_and_a_machine_store(
    engine, scenario, run_exporter, tmp_path
):
    docker = shutil.which("docker", path=clean_env()["PATH"])
    need(None if docker else "the docker CLI is not installed")
    docker_config = tmp_path / "docker-config"
    cli_env = clean_env({"DOCKER_CONFIG": str(docker_config)})
    tls = tls_of(engine)
    for name, host in (
        ("ctx-tls", f"host={engine.tcp_url},ca={tls['ca']},cert={tls['cert']},key={tls['key']}"),
        ("ctx-ssh", "host=ssh://ops@127.0.0.1"),
    ):
        subprocess.run(
            [str(docker), "context", "create", name, "--docker", host],
            env=cli_env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    # the layout tests/support/cli_stores.py writes for the unit tests is the CLI's
    digest = hashlib.sha256(b"ctx-tls").hexdigest()
    meta = json.loads((docker_config / "contexts" / "meta" / digest / "meta.json").read_text())
    assert (meta["Name"], meta["Endpoints"]["docker"]["Host"]) == ("ctx-tls", engine.tcp_url)
    tls_dir = docker_config / "contexts" / "tls" / digest / "docker"
    assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    # docker-machine's store: a machine of the none driver (its engine is at Driver.URL)
    machine = tmp_path / "machine" / "machines" / "vm-test"
    machine.mkdir(parents=True)
    for f in ("ca", "cert", "key"):
        shutil.copy(tls[f], machine / f"{f}.pem")
    (machine / "config.json").write_text(
        json.dumps(
            {
                "ConfigVersion": 3,
                "Driver": {
                    "IPAddress": "127.0.0.1",
                    "MachineName": "vm-test",
                    "URL": engine.tcp_url,
                },
                "DriverName": "none",
                "HostOptions": {"AuthOptions": {"CertDir": str(machine)}},
                "Name": "vm-test",
            }
        )
    )  # fmt: skip
    config = write_config(
        tmp_path / "fleet.yml",
        [],
        discover={
            "docker_contexts": str(docker_config),
            "docker_machine": str(tmp_path / "machine"),
        },
    )
    exp = run_exporter("--config.file", str(config), env=clean_env())
    for name in ("ctx-tls", "vm-test"):
        wait_until(partial(has, exp, name, engine_up), 30, what=f"{name} collected",
                   diagnostics=partial(target_state, exp, name, engine))  # fmt: skip
        # the scenario's images, over mutual TLS
        assert value(target_samples(exp, name), "docker_images") == 9.0
    sources = {
        dict(labels)["target"]: dict(labels)["source"]
        for metric, labels in exp.samples()
        if metric == "docker_exporter_target_info"
    }
    assert sources == {"ctx-tls": "docker context", "vm-test": "docker-machine"}
    assert (
        "docker context 'ctx-ssh': skipped: ssh://ops@127.0.0.1 is an ssh:// host; the exporter"
        " reaches engines over tcp:// or unix:// only"
    ) in exp.log()
    assert exp.get("/metrics?target=ctx-ssh")[0] == 404


# --------------------------------------------------------------------------- Prometheus

FLEET_CONFIG = REPO / "deploy" / "fleet" / "prometheus.yml"
SHARD_CONFIG = REPO / "deploy" / "fleet" / "prometheus-shard.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "docker-inventory.json"


def prometheus_copy(source: Path, exporter_port: int, shard: str | None = None) -> dict[str, Any]:
    """The shipped config, scraping every second, pointed at the test exporter."""
    cfg: dict[str, Any] = yaml.safe_load(source.read_text())
    cfg["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [str((source.parent / f).resolve()) for f in cfg.get("rule_files", [])]
    address = f"127.0.0.1:{exporter_port}"
    for job in cfg["scrape_configs"]:
        for sd in job.get("http_sd_configs", []):
            sd["url"] = f"http://{address}/targets"
            sd["refresh_interval"] = "1s"
        for rule in job.get("relabel_configs", []):
            if rule.get("target_label") == "__address__":
                rule["replacement"] = address
            if shard is not None and rule.get("action") == "keep":
                rule["regex"] = shard
        for static in job.get("static_configs", []):
            static["targets"] = [address]
    return cfg


def start_prometheus(
    run_prometheus: RunPrometheus, cfg: dict[str, Any], workdir: Path
) -> Prometheus:
    """A real Prometheus on ``cfg``, stopped by the ``run_prometheus`` fixture after the test."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    prom = run_prometheus(path)
    prom.wait_ready()
    return prom


def evaluated_rules(prom: Prometheus) -> list[dict[str, Any]] | None:
    """The rule groups once every rule has been evaluated (never: 0001-01-01)."""
    groups: list[dict[str, Any]] = prom.get("/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    done = rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
    return groups if done else None


# Panels that need a Swarm manager or project-labelled volumes, which the session engine is
# not and has not: test_prometheus_e2e.py's test_swarm_and_project_panels_return_data runs them.
NEED_SWARM_OR_LABELLED_VOLUMES = {
    "Project bytes (A)",
    "Swarm services: running and desired tasks (A)",
    "Swarm services: running and desired tasks (B)",
    "Swarm tasks not running (A)",
    "Containers to pull or recreate (A)",  # the opt-in registry job: see test_prometheus_e2e.py
}


def dashboard_queries(instance: str) -> list[tuple[str, str]]:
    """Each panel query, with Grafana's variables as it sets them for one instance."""
    variables = {
        "job": "docker-inventory", "instance": instance, "datasource": "prometheus",
        "__rate_interval": "1m", "__interval": "15s", "__range": "1h",
    }  # fmt: skip
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for target in p.get("targets", []):
                expr = re.sub(
                    r"\$\{(\w+)(?::\w+)?\}|\$(\w+)",
                    lambda m: variables[str(m.group(1) or m.group(2))],
                    target["expr"],
                )
                out.append((f"{p['title']} ({target['refId']})", expr))
    return out


def test_prometheus_finds_every_engine_through_http_sd(
    engine, scenario, run_exporter, run_prometheus, tmp_path
):
    config = write_config(
        tmp_path / "fleet.yml",
        [
            {"name": "engine-tls", "host": engine.tcp_url, "tls": tls_of(engine),
             "disk_usage_interval": "2s", "container_sizes_interval": "2s"},
            {"name": "engine-unix", "host": engine.unix_url,
             "disk_usage_interval": "2s", "container_sizes_interval": "2s"},
        ],
    )  # fmt: skip
    exp = run_exporter("--config.file", str(config), env=clean_env())
    for name in ("engine-tls", "engine-unix"):
        wait_until(partial(has, exp, name, sized), 30, what=f"{name} fully collected",
                   diagnostics=partial(target_state, exp, name, engine))  # fmt: skip
    prom = start_prometheus(
        run_prometheus, prometheus_copy(FLEET_CONFIG, exp.port), tmp_path / "prom"
    )
    four = 'count_over_time(docker_disk_usage_bytes{resource="images"}[1m]) >= 4'
    prom.wait("every engine scraped four times", lambda: len(prom.query(four)) == 2)
    up = {r["metric"]["instance"]: r["value"][1] for r in prom.query('up{job="docker-inventory"}')}
    assert up == {"engine-tls": "1", "engine-unix": "1"}
    for name in ("engine-tls", "engine-unix"):
        empty = []
        for where, expr in dashboard_queries(name):
            rows = prom.query(expr)
            if not rows and where not in NEED_SWARM_OR_LABELLED_VOLUMES:
                empty.append(f"{where}: {expr}")
            for row in rows:
                assert row["metric"].get("instance", name) == name, where
        assert not empty, f"{name}: queries without data:\n" + "\n".join(empty)
    # the shipped alert rules load and evaluate; the engines are up, so DockerEngineDown and
    # DockerExporterDown (up == 0 per instance) stay silent
    groups = prom.wait("every rule evaluated", partial(evaluated_rules, prom))
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    assert prom.query('ALERTS{alertname=~"DockerEngineDown|DockerExporterDown"}') == []
    own = prom.query('docker_exporter_target_up{job="docker-inventory-exporter"}')
    assert {r["metric"]["target"] for r in own} == {"engine-tls", "engine-unix"}


def test_two_replicas_split_the_fleet_by_hashmod(run_exporter, run_prometheus, tmp_path):
    engines: dict[str, FakeEngine] = {f"host-{i}": synthetic_engine() for i in range(6)}
    try:
        config = write_config(
            tmp_path / "fleet.yml",
            [{"name": n, "host": e.url} for n, e in engines.items()],
        )
        settings = yaml.safe_load(config.read_text())
        settings["defaults"] = {"collect_interval": "1s", "collect_timeout": "900ms",
                                "disk_usage_interval": "0"}  # fmt: skip
        config.write_text(yaml.safe_dump(settings))
        replicas = [
            run_exporter("--config.file", str(config), "--collect.on-scrape", env=clean_env())
            for _ in range(2)
        ]
        proms = [
            start_prometheus(
                run_prometheus, prometheus_copy(SHARD_CONFIG, r.port, str(i)), tmp_path / f"p{i}"
            )
            for i, r in enumerate(replicas)
        ]

        def scraped(prom: Prometheus) -> set[str]:
            rows = prom.query('up{job="docker-inventory"} == 1')
            return {r["metric"]["instance"] for r in rows}

        wait_until(
            lambda: all(e.count("/images/json") >= 3 for e in engines.values()),
            60, what="every engine collected",
            diagnostics=lambda: "collections of /images/json per engine: "
            f"{ {n: e.count('/images/json') for n, e in engines.items()} }\n"
            + "\n".join(f"replica {i} log:\n{r.log(15)}" for i, r in enumerate(replicas)),
        )  # fmt: skip
        shards = [scraped(p) for p in proms]
        assert shards[0] | shards[1] == set(engines) and not shards[0] & shards[1]
        assert shards[0] and shards[1], f"hashmod put every target in one shard: {shards}"
        # one client per engine: /version is asked once per client and connection, so an
        # engine collected by both replicas would have answered it twice
        assert {n: e.count("/version") for n, e in engines.items()} == dict.fromkeys(engines, 1)
        for replica, mine in zip(replicas, shards):
            own = replica.samples()
            collecting = {
                dict(k[1])["target"]
                for k, v in own.items()
                if k[0] == "docker_exporter_target_collecting" and v == 1.0
            }
            assert collecting == mine
    finally:
        for e in engines.values():
            e.close()
