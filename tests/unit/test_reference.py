"""Reference normalisation, checked against what the docker CLI (distribution/reference's
ParseDockerRef) makes of the same strings."""

from __future__ import annotations

import pytest

from exporter.reference import Reference, ReferenceError, parse_reference, repo_digest

D = "sha256:" + "ab" * 32

NORMALISED = [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("library/nginx", "docker.io/library/nginx:latest"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/team/app:v1", "docker.io/team/app:v1"),
    ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2"),
    ("team/sub/app", "docker.io/team/sub/app:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/team/sub/app", "127.0.0.1:5000/team/sub/app:latest"),
    ("ghcr.io/owner/repo/image:sha-1", "ghcr.io/owner/repo/image:sha-1"),
    ("registry:5000/app", "registry:5000/app:latest"),
    ("Registry/app", "Registry/app:latest"),  # upper case: a domain
    ("[::1]:5000/app:v1", "[::1]:5000/app:v1"),
    ("quay.io/a__b/c-d.e:T_a.g-1", "quay.io/a__b/c-d.e:T_a.g-1"),
    ("a--b", "docker.io/library/a--b:latest"),
    (f"nginx@{D}", f"docker.io/library/nginx@{D}"),
    (f"nginx:1.25@{D}", f"docker.io/library/nginx@{D}"),  # both: the digest wins
    (f"localhost:5000/app@{D}", f"localhost:5000/app@{D}"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALISED)
def test_normalised_as_the_docker_cli(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


def test_parts_and_api_host() -> None:
    hub = parse_reference("nginx")
    assert hub == Reference("docker.io", "library/nginx", "latest")
    assert (hub.registry, hub.api_host, hub.name) == (
        "docker.io",
        "registry-1.docker.io",
        "docker.io/library/nginx",
    )
    local = parse_reference("127.0.0.1:5000/team/app:v2")
    assert (local.registry, local.api_host, local.path, local.tag) == (
        "127.0.0.1:5000",
        "127.0.0.1:5000",
        "team/app",
        "v2",
    )


REJECTED = [
    ("NGINX", "repository name (library/NGINX) must be lowercase"),
    ("docker.io/Team/app", "repository name (Team/app) must be lowercase"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("", "invalid reference format"),
    ("nginx:", "invalid reference format"),
    ("nginx:-bad", "invalid reference format"),
    ("-nginx", "invalid reference format"),
    ("a-/b", "invalid reference format"),
    ("nginx::1", "invalid reference format"),
    ("ngi nx", "invalid reference format"),
    ("nginx:" + "t" * 129, "invalid reference format"),
    ("localhost:5000/app:v1:v2", "invalid reference format"),
    ("nginx@sha256:abc", "invalid reference format"),
    ("nginx@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("nginx@sha256:" + "a" * 63 + "g", "invalid reference format"),
    ("nginx@sha256:" + "a" * 66, "invalid checksum digest format"),
    ("r.io/" + "a" * 251, "must not be more than 255 characters"),
]


@pytest.mark.parametrize(("text", "message"), REJECTED)
def test_rejected_as_the_docker_cli_rejects(text: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_reference(text)


def test_name_of_255_characters_is_accepted() -> None:
    assert len(parse_reference("r.io/" + "a" * 250).name) == 255


def test_repo_digests_as_the_engine_lists_them() -> None:
    assert repo_digest(f"nginx@{D}") == ("docker.io/library/nginx", D)
    assert repo_digest(f"127.0.0.1:5000/app@{D}") == ("127.0.0.1:5000/app", D)
    assert repo_digest("<none>@<none>") is None
    assert repo_digest("nginx:latest") is None
