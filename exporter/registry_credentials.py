"""Registry credentials, found where the docker CLI keeps them.

``config.json`` in ``$DOCKER_CONFIG`` (default ``~/.docker``): ``credHelpers`` names a
helper per registry, ``credsStore`` one for all, and ``auths`` holds base64 ``user:pass``
entries. A helper is run as ``docker-credential-NAME get`` with the server URL on stdin,
as the CLI runs it, with a timeout. Overrides from --config.file win over all of them.
Docker Hub's entry is keyed ``https://index.docker.io/v1/``, as the CLI keys it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .reference import DOCKER_HUB

log = logging.getLogger(__name__)

HUB_SERVER = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 10.0
HELPER_OUTPUT_MAX = 64 * 1024


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"Credentials(username={self.username!r}, password=***)"


class CredentialsError(Exception):
    """A helper failed or config.json is unreadable; one line, no secret in it."""


def _host_of(key: str) -> str:
    """The CLI's ConvertToHostname: scheme and path dropped from an auths key."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def server_key(registry: str) -> str:
    """What the CLI looks credentials up by, for a registry as references name it."""
    return HUB_SERVER if registry == DOCKER_HUB else registry


def config_dir(env: Mapping[str, str]) -> Path:
    given = env.get("DOCKER_CONFIG")
    return Path(given) if given else Path.home() / ".docker"


class CredentialStore:
    """The credentials of each registry, read from config.json on every lookup (cheap; a
    ``docker login`` is seen without a restart) and from the overrides."""

    def __init__(
        self,
        directory: Path | None,
        overrides: Mapping[str, Credentials] | None = None,
        helper_timeout: float = HELPER_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.overrides = dict(overrides or {})
        self.helper_timeout = helper_timeout

    def set_overrides(self, overrides: Mapping[str, Credentials]) -> None:
        """Replace the overrides (a reload of --config.file): one atomic swap."""
        self.overrides = dict(overrides)

    def _config(self) -> Mapping[str, object]:
        if self.directory is None:
            return {}
        path = self.directory / "config.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"cannot read {path}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def lookup(self, registry: str) -> Credentials | None:
        if registry in self.overrides:
            return self.overrides[registry]
        config = self._config()
        helpers = config.get("credHelpers")
        helper = helpers.get(registry) if isinstance(helpers, dict) else None
        if not helper and isinstance(config.get("credsStore"), str):
            helper = config["credsStore"]
        if isinstance(helper, str) and helper:
            return self._from_helper(helper, server_key(registry))
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return None
        wanted = _host_of(server_key(registry))
        for key, entry in auths.items():
            if _host_of(str(key)) == wanted and isinstance(entry, dict):
                return _from_auth_entry(entry, str(key))
        return None

    def _from_helper(self, name: str, server: str) -> Credentials | None:
        program = f"docker-credential-{name}"
        try:
            done = subprocess.run(
                [program, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=self.helper_timeout,
                check=False,
                env=dict(os.environ),
            )
        except FileNotFoundError:
            raise CredentialsError(f"credential helper {program} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CredentialsError(
                f"credential helper {program} gave no answer within {self.helper_timeout:g}s"
            ) from None
        out = done.stdout[:HELPER_OUTPUT_MAX]
        if done.returncode != 0:
            if b"credentials not found" in out.lower() or b"credentials not found" in (
                done.stderr[:HELPER_OUTPUT_MAX].lower()
            ):
                return None  # the helper knows no login for it: anonymous, as the CLI is
            raise CredentialsError(f"credential helper {program} failed (exit {done.returncode})")
        try:
            answer = json.loads(out)
            username, secret = str(answer["Username"]), str(answer["Secret"])
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(
                f"credential helper {program} answered no JSON credentials"
            ) from None
        if username == "<token>":
            raise CredentialsError(
                f"credential helper {program} holds an identity token, which is not supported"
            )
        return Credentials(username, secret)


def _from_auth_entry(entry: Mapping[str, object], key: str) -> Credentials | None:
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(str(entry["username"]), str(entry["password"]))
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError(
            f"config.json auths entry {key} is not base64 user:password"
        ) from None
    if not sep:
        raise CredentialsError(f"config.json auths entry {key} is not base64 user:password")
    return Credentials(user, password)
