"""Image references, normalised as the docker CLI does (distribution/reference).

``parse_reference("nginx")`` is ``docker.io/library/nginx:latest``, as
``reference.ParseDockerRef`` gives it: the domain is the first path component when it
has a '.' or a ':', is ``localhost``, or has an upper-case letter; otherwise the image
is on Docker Hub, whose one-component names live under ``library/``. A reference with
both a tag and a digest keeps the digest only, as the engine pulls it by digest.
Docker Hub is ``docker.io`` in labels and ``registry-1.docker.io`` on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
LEGACY_HUB = "index.docker.io"
NAME_MAX = 255  # NameTotalLengthMax: domain and path together

# The grammar of distribution/reference (regexp.go), written out once.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"((?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?",
    re.ASCII,
)
_HEX64 = re.compile(r"[a-f0-9]{64}", re.ASCII)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class ReferenceError(ValueError):
    """Not a reference the docker CLI accepts; the message says why, in its words."""


@dataclass(frozen=True, order=True)
class Reference:
    domain: str  # host[:port], docker.io for Docker Hub
    path: str  # the repository within the registry: library/nginx, team/app/web
    tag: str = ""  # '' when pinned by digest
    digest: str = ""  # algorithm:hex, '' when by tag

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def registry(self) -> str:
        """The registry as the ``registry`` label names it."""
        return self.domain

    @property
    def api_host(self) -> str:
        """Where the registry API is served: host[:port]."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: the domain and the rest, Docker Hub's library/ added."""
    first, slash, rest = name.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_normalized(text: str) -> Reference:
    """ParseNormalizedNamed: the reference as given, normalised; tag and digest as written."""
    if _HEX64.fullmatch(text):
        raise ReferenceError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(text)
    remote = remainder.split("@", 1)[0]
    colon = remote.find(":")
    if colon >= 0:
        remote = remote[:colon]
    if remote.lower() != remote:
        raise ReferenceError(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise ReferenceError(f"invalid reference format: {text!r}")
    name, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(name) > NAME_MAX:
        raise ReferenceError(f"repository name must not be more than {NAME_MAX} characters")
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        expected = _DIGEST_LENGTHS.get(algorithm)
        if expected is None:
            raise ReferenceError(f"unsupported digest algorithm: {digest}")
        if len(hex_part) != expected or hex_part.lower() != hex_part:
            raise ReferenceError(f"invalid checksum digest format: {digest}")
    domain, _, path = name.partition("/")
    return Reference(domain, path, tag, digest)


def parse_reference(text: str) -> Reference:
    """ParseDockerRef: normalised, ``:latest`` when neither tag nor digest is given, and
    the digest alone when both are."""
    ref = parse_normalized(text)
    if ref.digest:
        return Reference(ref.domain, ref.path, "", ref.digest)
    if not ref.tag:
        return Reference(ref.domain, ref.path, "latest")
    return ref


def repo_digest(text: str) -> tuple[str, str] | None:
    """A RepoDigests entry (``nginx@sha256:…``) as (normalised name, digest); None when
    the engine sent something that is not one."""
    try:
        ref = parse_normalized(text)
    except ReferenceError:
        return None
    if not ref.digest:
        return None
    return ref.name, ref.digest
