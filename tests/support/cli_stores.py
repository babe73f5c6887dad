"""The docker CLI's context store and docker-machine's store, written in their real layouts.

tests/integration/test_fleet_integration.py checks the context layout against what the
real ``docker context create`` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def add_context(
    config_dir: Path, name: str, host: str, certs: Path | None = None, skip_verify: bool = False
) -> None:
    """What `docker context create NAME --docker host=...,ca=...,cert=...,key=...` writes."""
    digest = hashlib.sha256(name.encode()).hexdigest()  # the CLI's directory name
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if certs is not None:
        tls = config_dir / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (tls / f).write_bytes((certs / f).read_bytes())


def add_machine(store: Path, name: str, address: str, certs: Path) -> Path:
    """A machine directory as docker-machine (config version 3) leaves it."""
    machine = store / "machines" / name
    machine.mkdir(parents=True)
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (machine / f).write_bytes((certs / f).read_bytes())
    (machine / "id_rsa").write_text("not read")
    config = {
        "ConfigVersion": 3,
        "Driver": {
            "IPAddress": address,
            "MachineName": name,
            "SSHUser": "docker",
            "SSHPort": 22,
            "StorePath": str(store),
        },
        "DriverName": "virtualbox",
        "HostOptions": {
            "EngineOptions": {"TlsVerify": True, "InstallURL": "https://get.docker.com"},
            "AuthOptions": {
                "CertDir": str(store / "certs"),
                "CaCertPath": str(store / "certs" / "ca.pem"),
                "ClientKeyPath": str(store / "certs" / "key.pem"),
                "ClientCertPath": str(store / "certs" / "cert.pem"),
                "ServerCertPath": str(machine / "server.pem"),
                "StorePath": str(machine),
            },
        },
        "Name": name,
    }
    (machine / "config.json").write_text(json.dumps(config, indent=4))
    return machine
