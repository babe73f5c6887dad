"""Discovery from a context store and a docker-machine store, built here in the CLI's layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import parse_config
from exporter.config import EngineConfig, TLSSettings
from exporter.configfile import load
from exporter.discovery import Found, context_digest, docker_contexts, docker_machines
from tests.support.certs import generate_certs
from tests.support.cli_stores import add_context, add_machine

BASE = parse_config([], {}).target.settings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_certs(tmp_path_factory.mktemp("tls"))[0]


def test_contexts_with_tls_skip_verify_plain_and_ssh(tmp_path, certs):
    add_context(tmp_path, "build1", "tcp://10.0.0.7:2376", certs)
    add_context(tmp_path, "lab", "tcp://10.0.0.8:2376", certs, skip_verify=True)
    add_context(tmp_path, "sock", "unix:///run/user/1000/docker.sock")
    add_context(tmp_path, "remote", "ssh://ops@10.0.0.9")
    add_context(tmp_path, "bad+name", "tcp://10.0.0.10:2376")
    found, notes = docker_contexts(tmp_path)
    tls = tmp_path / "contexts" / "tls"
    build1 = tls / context_digest("build1") / "docker"
    lab = tls / context_digest("lab") / "docker"
    assert sorted(found, key=lambda f: f.name) == [
        Found(
            "build1",
            "tcp://10.0.0.7:2376",
            str(build1 / "ca.pem"),
            str(build1 / "cert.pem"),
            str(build1 / "key.pem"),
            True,
            True,
            "docker context",
        ),
        Found(
            "lab",
            "tcp://10.0.0.8:2376",
            str(lab / "ca.pem"),
            str(lab / "cert.pem"),
            str(lab / "key.pem"),
            False,
            True,
            "docker context",
        ),
        Found("sock", "unix:///run/user/1000/docker.sock", None, None, None, True, False,
              "docker context"),
    ]  # fmt: skip
    assert sorted(notes) == [
        "docker context 'bad+name': skipped: the name is not a valid target name [A-Za-z0-9_.-]+",
        "docker context 'remote': skipped: ssh://ops@10.0.0.9 is an ssh:// host; the exporter"
        " reaches engines over tcp:// or unix:// only",
    ]


def test_an_unreadable_context_is_skipped_with_a_note(tmp_path):
    meta = tmp_path / "contexts" / "meta" / ("0" * 64)
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text("{")
    found, notes = docker_contexts(tmp_path)
    assert found == []
    assert notes == [
        f"docker context in {meta}: skipped: unreadable meta.json (JSONDecodeError:"
        " Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    ]


def test_no_store_finds_nothing(tmp_path):
    assert docker_contexts(tmp_path / "none") == ([], [])
    assert docker_machines(tmp_path / "none") == ([], [])


def test_machines(tmp_path, certs):
    vm2 = add_machine(tmp_path, "vm2", "192.168.99.101", certs)
    add_machine(tmp_path, "v6", "fd00::5", certs)
    pending = add_machine(tmp_path, "pending", "", certs)
    assert pending.is_dir()
    found, notes = docker_machines(tmp_path)
    assert [(f.name, f.host) for f in found] == [
        ("v6", "tcp://[fd00::5]:2376"),
        ("vm2", "tcp://192.168.99.101:2376"),
    ]
    assert found[1] == Found(
        "vm2",
        "tcp://192.168.99.101:2376",
        str(vm2 / "ca.pem"),
        str(vm2 / "cert.pem"),
        str(vm2 / "key.pem"),
        True,
        True,
        "docker-machine",
    )
    assert notes == [
        "docker-machine 'pending': skipped: config.json has no Driver.IPAddress (not created?)"
    ]


def test_the_file_merges_discovery_and_explicit_targets_win(tmp_path, certs):
    docker_config = tmp_path / "docker"
    store = tmp_path / "machine"
    add_context(docker_config, "build1", "tcp://10.0.0.7:2376", certs)
    add_context(docker_config, "ctx2", "tcp://10.0.0.2:2376", certs)
    add_machine(store, "vm2", "192.168.99.101", certs)
    add_machine(store, "ctx2", "192.168.99.102", certs)
    path = tmp_path / "fleet.yml"
    path.write_text(
        f"defaults: {{collect_interval: 30s}}\n"
        f"targets:\n  - name: build1\n    host: unix:///var/run/docker.sock\n"
        f"discover:\n  docker_contexts: true\n  docker_machine: {store}\n"
    )
    loaded = load(str(path), BASE, {"DOCKER_CONFIG": str(docker_config)})
    by_name = {t.name: t for t in loaded.targets}
    assert list(by_name) == ["build1", "ctx2", "vm2"]
    assert by_name["build1"].engine == EngineConfig("unix:///var/run/docker.sock")
    vm2 = store / "machines" / "vm2"
    assert by_name["vm2"].engine == EngineConfig(
        "tcp://192.168.99.101:2376",
        TLSSettings(str(vm2 / "ca.pem"), str(vm2 / "cert.pem"), str(vm2 / "key.pem"), True),
    )
    assert by_name["vm2"].settings.schedules.inventory.interval == 30
    assert dict(loaded.sources) == {
        "build1": "file",
        "ctx2": "docker context",
        "vm2": "docker-machine",
    }
    assert loaded.notes == ("docker-machine 'ctx2': skipped: a docker context has that name",)
    assert str(docker_config / "contexts" / "meta") in map(str, loaded.watched)


def test_a_discovered_engine_with_broken_tls_files_is_skipped(tmp_path, certs):
    store = tmp_path / "machine"
    machine = add_machine(store, "vm3", "10.1.1.1", certs)
    (machine / "key.pem").unlink()
    path = tmp_path / "fleet.yml"
    path.write_text(f"discover:\n  docker_machine: {store}\n")
    loaded = load(str(path), BASE, {})
    assert loaded.targets == ()
    assert loaded.notes == (
        f"docker-machine 'vm3': skipped: cannot read the client key {machine}/key.pem:"
        " No such file or directory",
    )
