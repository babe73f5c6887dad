"""Registry credentials from the docker CLI's config.json and its credential helpers (real
helper programs, written as scripts into a private PATH)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from exporter.registry_credentials import (
    Credentials,
    CredentialsError,
    CredentialStore,
    config_dir,
)


def write_config(directory: Path, config: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def helper(bin_dir: Path, name: str, script: str, monkeypatch) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return path


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_entries_keyed_as_the_cli_keys_them(tmp_path: Path):
    d = write_config(
        tmp_path / "cfg",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth("hub", "p1")},
                "127.0.0.1:5000": {"auth": auth("local", "p:2")},
                "https://ghcr.io": {"username": "gh", "password": "p3"},
            }
        },
    )
    store = CredentialStore(d)
    assert store.lookup("docker.io") == Credentials("hub", "p1")
    assert store.lookup("127.0.0.1:5000") == Credentials("local", "p:2")
    assert store.lookup("ghcr.io") == Credentials("gh", "p3")
    assert store.lookup("quay.io") is None
    assert "p1" not in repr(store.lookup("docker.io"))


def test_overrides_win(tmp_path: Path):
    d = write_config(tmp_path / "cfg", {"auths": {"ghcr.io": {"auth": auth("a", "b")}}})
    store = CredentialStore(d, {"ghcr.io": Credentials("o", "p")})
    assert store.lookup("ghcr.io") == Credentials("o", "p")


def test_cred_helpers_and_creds_store_run_as_the_cli_runs_them(tmp_path: Path, monkeypatch):
    log = tmp_path / "asked"
    helper(
        tmp_path / "bin",
        "pass",
        f'read server; echo "$1 $server" >> {log}\n'
        'printf \'{"ServerURL":"%s","Username":"u-%s","Secret":"s"}\' "$server" "$server"\n',
        monkeypatch,
    )
    helper(
        tmp_path / "bin",
        "none",
        'echo "credentials not found in native keychain"; exit 1\n',
        monkeypatch,
    )
    d = write_config(
        tmp_path / "cfg",
        {"credsStore": "pass", "credHelpers": {"quay.io": "none"}, "auths": {"quay.io": {}}},
    )
    store = CredentialStore(d)
    assert store.lookup("docker.io") == Credentials("u-https://index.docker.io/v1/", "s")
    assert store.lookup("ghcr.io") == Credentials("u-ghcr.io", "s")
    assert store.lookup("quay.io") is None
    assert log.read_text() == "get https://index.docker.io/v1/\nget ghcr.io\n"


def test_helper_failures_are_one_line(tmp_path: Path, monkeypatch):
    helper(tmp_path / "bin", "slow", "sleep 5\n", monkeypatch)
    helper(tmp_path / "bin", "broken", "echo oops; exit 3\n", monkeypatch)
    d = write_config(
        tmp_path / "cfg",
        {"credHelpers": {"a.io": "slow", "b.io": "broken", "c.io": "missing-helper"}},
    )
    store = CredentialStore(d, helper_timeout=0.5)
    with pytest.raises(
        CredentialsError, match=r"docker-credential-slow gave no answer within 0\.5s"
    ):
        store.lookup("a.io")
    with pytest.raises(CredentialsError, match=r"docker-credential-broken failed \(exit 3\)"):
        store.lookup("b.io")
    with pytest.raises(CredentialsError, match="docker-credential-missing-helper is not installed"):
        store.lookup("c.io")


def test_config_dir_follows_docker_config(tmp_path: Path):
    assert config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path
    assert config_dir({}) == Path.home() / ".docker"
    assert CredentialStore(tmp_path / "absent").lookup("docker.io") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CredentialsError, match=r"cannot read .*config\.json"):
        CredentialStore(tmp_path / "bad").lookup("docker.io")
