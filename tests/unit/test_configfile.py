"""The --config.file: valid files, and every error as one exact line naming file, target, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from exporter.cli import parse_config
from exporter.config import EngineConfig, JobSchedule, TLSSettings
from exporter.configfile import load
from exporter.registry_credentials import Credentials
from tests.support.certs import generate_certs

BASE = parse_config([], {}).target.settings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_certs(tmp_path_factory.mktemp("tls"))[0]


def write(tmp_path: Path, text: str, certs: Path) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(textwrap.dedent(text).replace("CERTS", str(certs)))
    return path


def test_the_issue_example_loads(tmp_path, certs):
    machine = tmp_path / "machine"
    (machine / "machines").mkdir(parents=True)
    path = write(
        tmp_path,
        f"""
        defaults:
          collect_interval: 30s
        targets:
          - name: build1
            host: tcp://203.0.113.7:2376
            tls:
              ca: CERTS/ca.pem
              cert: CERTS/cert.pem
              key: CERTS/key.pem
              verify: true
          - name: vm2
            host: tcp://203.0.113.8:2376
            tls:
              cert_path: CERTS
            collect_interval: 1m
            collect_timeout: 10s
            container_labels: [team]
          - name: local
            host: unix:///var/run/docker.sock
            collect_interval: 3s
        discover:
          docker_contexts: {tmp_path / "no-docker-config"}
          docker_machine: {machine}
        """,
        certs,
    )
    loaded = load(str(path), BASE, {})
    build1, vm2, local = loaded.targets
    tls = TLSSettings(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"), True)
    assert build1.engine == EngineConfig("tcp://203.0.113.7:2376", tls)
    assert vm2.engine == build1.engine.__class__("tcp://203.0.113.8:2376", tls)
    assert local.engine == EngineConfig("unix:///var/run/docker.sock")
    assert build1.settings.schedules.inventory == JobSchedule(30, 5)
    assert vm2.settings.schedules.inventory == JobSchedule(60, 10)
    # the default 5s timeout, shortened to a shorter interval
    assert local.settings.schedules.inventory == JobSchedule(3, 3)
    assert vm2.settings.container_labels == ("team",)
    assert local.settings.container_labels == BASE.container_labels
    assert build1.settings.schedules.disk_usage == BASE.schedules.disk_usage
    assert dict(loaded.sources) == {"build1": "file", "vm2": "file", "local": "file"}
    # a discovery directory that does not exist is said, never silently empty (issue 20)
    assert loaded.notes == (
        f"discover.docker_contexts: {tmp_path / 'no-docker-config'} is not a directory:"
        " nothing found",
    )
    assert loaded.watched[0] == path


def test_an_empty_file_has_no_targets(tmp_path, certs):
    loaded = load(str(write(tmp_path, "", certs)), BASE, {})
    assert (loaded.targets, loaded.notes) == ((), ())


def test_verify_false_warns_once_per_target(tmp_path, certs):
    path = write(
        tmp_path,
        """
        targets:
          - name: edge
            host: tcp://10.0.0.9:2376
            tls: {cert: CERTS/cert.pem, key: CERTS/key.pem, verify: false}
        """,
        certs,
    )
    loaded = load(str(path), BASE, {})
    assert loaded.targets[0].engine.tls == TLSSettings(
        None, str(certs / "cert.pem"), str(certs / "key.pem"), False
    )
    assert loaded.notes == (
        "target 'edge': TLS without server verification: the engine's identity is not checked"
        " (use only for hosts whose certificate does not name the address you use)",
    )


ONE = "targets:\n  - name: b1\n    host: tcp://10.0.0.1:2376\n"

ERRORS = [
    ("targets: [\n", "line 2: not valid YAML: expected the node content, but found '<stream end>'"),
    ("- a\n- b\n", "must be a mapping of defaults, targets and discover"),
    ("target: []\n", "target: unknown key (known: defaults, targets, discover, registries)"),
    ("targets: {b1: {}}\n", "targets: must be a list of targets"),
    ("targets: [b1]\n", "targets[0]: must be a mapping of target settings (name, host, tls, ...)"),
    ("targets:\n  - host: unix:///d.sock\n", "targets[0]: name: is required"),
    ("targets:\n  - name: a b\n", "targets[0]: name: 'a b' does not match [A-Za-z0-9_.-]+"),
    ("targets:\n  - name: 7\n", "targets[0]: name: YAML read 7 as a number: quote it"),
    (
        ONE + "  - name: b1\n    host: unix:///d.sock\n",
        "target 'b1': name: is used by an earlier target too",
    ),
    (
        "targets:\n  - name: b1\n",
        "target 'b1': host: is required (unix:///path or tcp://HOST:PORT)",
    ),
    (
        ONE + "    hots: x\n",
        "target 'b1': hots: unknown key (known: name, host, tls, collect_interval, collect_timeout, disk_usage_interval, disk_usage_timeout, container_sizes_interval, container_sizes_timeout, swarm_interval, swarm_timeout, registry_interval, registry_timeout, disk_usage_resources, per_image, per_container, per_volume, container_labels, max_answer_size, data_root_filesystem, registry_all_tags, events, alert_image_disk_share, alert_reclaimable_share, alert_image_disk_budget_bytes, alert_dangling_images, alert_dangling_volumes_bytes, alert_idle_build_cache_bytes, alert_container_restarts)",  # noqa: E501
    ),
    (
        "targets:\n  - name: b1\n    host: ssh://me@h\n",
        "target 'b1': host: 'ssh://me@h' is not a unix:// or tcp:// address",
    ),
    (
        "targets:\n  - name: b1\n    host: tcp://h:x\n",
        "target 'b1': host: 'tcp://h:x' has an invalid port",
    ),
    (
        ONE + "    tls: yes\n",
        "target 'b1': tls: must be a mapping of ca, cert, key, verify or cert_path",
    ),
    (
        ONE + "    tls: {capath: /x}\n",
        "target 'b1': tls.capath: unknown key (known: ca, cert, key, verify, cert_path)",
    ),
    (
        "targets:\n  - name: b1\n    host: unix:///d.sock\n    tls: {ca: CERTS/ca.pem}\n",
        "target 'b1': tls: needs a tcp:// host, not unix:///d.sock",
    ),
    (
        ONE + "    tls: {ca: /nonexistent/ca.pem}\n",
        "target 'b1': tls.ca: cannot read the engine CA file /nonexistent/ca.pem: No such file or directory",  # noqa: E501
    ),
    (
        ONE + "    tls: {cert: CERTS/cert.pem}\n",
        "target 'b1': tls.key: a client certificate needs its key: give both",
    ),
    (
        ONE + "    tls: {ca: CERTS/ca.pem, cert: CERTS/cert.pem, key: CERTS/ca-key.pem}\n",
        "target 'b1': tls.cert: the client certificate CERTS/cert.pem and key CERTS/ca-key.pem are not a matching PEM pair",  # noqa: E501
    ),
    (
        ONE + "    tls: {ca: CERTS/key.pem}\n",
        "target 'b1': tls.ca: the engine CA file CERTS/key.pem holds no PEM certificate",
    ),
    (
        ONE + "    tls: {cert_path: /nonexistent}\n",
        "target 'b1': tls.ca: cannot read the engine CA file /nonexistent/ca.pem: No such file or directory",  # noqa: E501
    ),
    (
        ONE + "    tls: {cert_path: CERTS, ca: CERTS/ca.pem}\n",
        "target 'b1': tls.cert_path: give either cert_path or tls.ca",
    ),
    (
        ONE + "    tls: {ca: CERTS/ca.pem, verify: 'no'}\n",
        "target 'b1': tls.verify: must be true or false",
    ),
    (
        ONE + "    collect_interval: soon\n",
        "target 'b1': collect_interval 'soon' is not a duration like 15s, 1h30m, 2d or 500ms",
    ),
    (
        ONE + "    collect_interval: 10s\n    collect_timeout: 11s\n",
        "target 'b1': collect_timeout (11s) must not be longer than collect_interval (10s)",
    ),
    (
        ONE + "    disk_usage_interval: 1m\n    disk_usage_timeout: 2m\n",
        "target 'b1': disk_usage_timeout (2m) must not be longer than disk_usage_interval (1m)",
    ),
    (ONE + "    collect_interval: 0\n", "target 'b1': collect_interval must be longer than 0"),
    (
        ONE + "    collect_interval: [15s]\n",
        "target 'b1': collect_interval: must be a duration like 15s, 5m or 1h",
    ),
    (
        ONE + "    container_labels: [a.b, a-b]\n",
        "target 'b1': container_labels keys 'a.b' and 'a-b' both become label_a_b",
    ),
    (
        ONE + "    container_labels: {a: 1}\n",
        "target 'b1': container_labels: must be a list of strings",
    ),
    (
        ONE + "    disk_usage_resources: [images, layers]\n",
        "target 'b1': disk_usage_resources has unknown 'layers'; choose from images, containers, volumes, build_cache",  # noqa: E501
    ),
    (ONE + "    per_image: maybe\n", "target 'b1': per_image: must be true or false"),
    (
        "defaults:\n  collect_timeout: 1m\n",
        "defaults: collect_timeout (1m) must not be longer than collect_interval (15s)",
    ),
    (
        "defaults:\n  host: unix:///d.sock\n",
        "defaults: host: unknown key (known: collect_interval, collect_timeout, disk_usage_interval, disk_usage_timeout, container_sizes_interval, container_sizes_timeout, swarm_interval, swarm_timeout, registry_interval, registry_timeout, disk_usage_resources, per_image, per_container, per_volume, container_labels, max_answer_size, data_root_filesystem, registry_all_tags, events, alert_image_disk_share, alert_reclaimable_share, alert_image_disk_budget_bytes, alert_dangling_images, alert_dangling_volumes_bytes, alert_idle_build_cache_bytes, alert_container_restarts)",  # noqa: E501
    ),
    (
        "discover:\n  docker_context: true\n",
        "discover: docker_context: unknown key (known: docker_contexts, docker_machine)",
    ),
    (
        "discover:\n  docker_machine: 3\n",
        "discover: docker_machine: must be true, false or a directory",
    ),
]


@pytest.mark.parametrize(("text", "error"), ERRORS, ids=[e[1][:60] for e in ERRORS])
def test_each_error_is_one_exact_line(tmp_path, certs, text, error):
    path = tmp_path / "fleet.yml"
    path.write_text(text.replace("CERTS", str(certs)))
    with pytest.raises(Exception) as err:
        load(str(path), BASE, {})
    assert str(err.value) == f"{path}: {error.replace('CERTS', str(certs))}"


def test_an_unreadable_file(tmp_path):
    with pytest.raises(Exception) as err:
        load(str(tmp_path / "missing.yml"), BASE, {})
    assert str(err.value) == f"{tmp_path}/missing.yml: cannot read: No such file or directory"


def test_registry_credentials_and_settings(tmp_path):
    secret = tmp_path / "ghcr.pass"
    secret.write_text("t0ken\n")
    path = tmp_path / "fleet.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            defaults: {{registry_interval: 6h, registry_all_tags: true}}
            targets: [{{name: a, host: "unix:///run/a.sock", registry_interval: 1h}}]
            registries:
              ghcr.io: {{username: bot, password_file: {secret}}}
            """
        )
    )
    loaded = load(str(path), BASE, {})
    settings = loaded.targets[0].settings
    assert (settings.schedules.registry, settings.registry_all_tags) == (
        JobSchedule(3600.0, 10.0),
        True,
    )
    assert dict(loaded.registry_credentials) == {"ghcr.io": Credentials("bot", "t0ken")}
    assert secret in loaded.watched
    path.write_text("registries:\n  ghcr.io: {username: bot}\n")
    with pytest.raises(Exception) as err:
        load(str(path), BASE, {})
    assert str(err.value) == (
        f"{path}: registries.ghcr.io: password_file: is required (a file holding the password)"
    )
    path.write_text(f"registries:\n  ghcr.io: {{username: bot, password_file: {tmp_path}/no}}\n")
    with pytest.raises(Exception) as err:
        load(str(path), BASE, {})
    assert str(err.value) == (
        f"{path}: registries.ghcr.io: password_file: cannot read {tmp_path}/no:"
        " No such file or directory"
    )
