"""Issue 20, items 3 to 5: hostile or broken configuration ends one way.

Every failure of loading, reading or discovery is one line naming the file and the field;
the running targets stay, the reload metric reads 0, the SIGHUP thread lives on, and at
start-up the exporter exits 2. Discovery files are read only when they are regular files
under a size cap; YAML aliases and duplicate keys are refused; echoed values are cut.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import parse_config
from exporter.config import ConfigError
from exporter.configfile import Loaded, load
from exporter.configtext import MAX_DEPTH, MAX_FILE_BYTES
from exporter.webconfig import load_web_config
from tests.support.certs import generate_certs
from tests.support.cli_stores import add_context, add_machine
from tests.support.env import clean_env
from tests.support.fake_engine import synthetic_engine
from tests.support.process import exporter_command
from tests.support.promql import value
from tests.support.wait import wait_until

BASE = parse_config([], {}).target.settings
DEEP = "targets: " + "[" * 2000 + "]" * 2000 + "\n"
BIG_INT = "defaults:\n  alert_dangling_images: " + "9" * 5000 + "\n"
BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "targets:\n  - name: *f\n    host: tcp://127.0.0.1:1\n"
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_certs(tmp_path_factory.mktemp("tls"))[0]


def load_text(tmp_path: Path, text: str) -> Loaded:
    path = tmp_path / "fleet.yml"
    path.write_text(text)
    return load(str(path), BASE, {})


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (DEEP, f"line 1: nested deeper than {MAX_DEPTH} levels"),
        (BIG_INT, "an integer longer than 4300 digits cannot be read"),
        (BOMB, "line 2: YAML aliases (*name) are not allowed here"),
        (
            "defaults:\n  data_root_filesystem: &p /x\ntargets:\n  - name: a\n"
            "    host: tcp://127.0.0.1:1\n    data_root_filesystem: *p\n",
            "line 6: YAML aliases (*name) are not allowed here",
        ),
        (
            "targets:\n  - name: a\n    host: tcp://127.0.0.1:1\n    host: tcp://127.0.0.1:2\n",
            "line 4: key 'host' is given twice",
        ),
        ("targets: []\ntargets: []\n", "line 2: key 'targets' is given twice"),
        (
            'targets:\n  - name: "e1\\n"\n',
            "targets[0]: name: 'e1\\n' does not match [A-Za-z0-9_.-]+",
        ),
        ("targets:\n  - name: 123\n", "targets[0]: name: YAML read 123 as a number: quote it"),
        ("targets:\n  - name: true\n", "targets[0]: name: YAML read True as a boolean: quote it"),
        (
            "defaults:\n  alert_dangling_images: .nan\n",
            "defaults: alert_dangling_images 'nan' is not a finite number",
        ),
        (
            "defaults:\n  alert_image_disk_share: .inf\n",
            "defaults: alert_image_disk_share 'inf' is not a finite number",
        ),
        (
            "targets:\n  - name: a\n    host: tcp://127.0.0.1:1\n"
            "    data_root_filesystem: [a, b]\n",
            "target 'a': data_root_filesystem: must be a single value, not a list",
        ),
    ],
)
def test_each_bad_file_is_one_line_naming_the_file(tmp_path, text, problem):
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'fleet.yml'}: {problem}")
    assert "\n" not in message and len(message) < 500


def test_a_long_name_is_cut_in_the_message(tmp_path):
    message = error_of(tmp_path, f"targets:\n  - name: '{'x' * 100_000} y'\n")
    assert message == (
        f"{tmp_path / 'fleet.yml'}: targets[0]: name: '{'x' * 76}... does not match [A-Za-z0-9_.-]+"
    )


LOAD_IN_A_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a regression fails, never eats RAM
from exporter.cli import parse_config
from exporter.config import ConfigError
from exporter.configfile import load
try:
    loaded = load(sys.argv[1], parse_config([], {}).target.settings, {})
    print(json.dumps({"targets": [t.name for t in loaded.targets], "notes": loaded.notes}))
except ConfigError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def load_in_a_child(path: Path | str) -> dict[str, object]:
    """load() in a child with 1 GiB of address space and 20 s: a hang or a memory eater
    from a regression fails this test instead of the machine."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", LOAD_IN_A_CHILD, str(path)],
            capture_output=True, text=True, timeout=20, env=clean_env(),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} still waited after 20 s")
    assert result.returncode == 0, result.stderr[-1500:]
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_a_fifo_or_a_device_is_not_read_as_the_config_file(tmp_path):
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    assert load_in_a_child(fifo) == {"error": f"{fifo}: is not a regular file"}
    assert load_in_a_child("/dev/zero") == {"error": "/dev/zero: is not a regular file"}
    big = tmp_path / "big.yml"
    big.write_text("#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError) as err:
        load(str(big), BASE, {})
    assert str(err.value) == f"{big}: is larger than {MAX_FILE_BYTES} bytes"


def test_discovery_files_must_be_regular_and_small(tmp_path):
    config_dir = tmp_path / "docker"
    add_context(config_dir, "ok", "tcp://127.0.0.1:1")
    meta = config_dir / "contexts" / "meta"
    fifo_dir, zero_dir = meta / ("f" * 64), meta / ("0" * 64)
    fifo_dir.mkdir()
    zero_dir.mkdir()
    os.mkfifo(fifo_dir / "meta.json")
    (zero_dir / "meta.json").symlink_to("/dev/zero")
    path = tmp_path / "fleet.yml"
    path.write_text(f"discover:\n  docker_contexts: {config_dir}\n")
    loaded = load_in_a_child(path)
    assert loaded["targets"] == ["ok"]
    assert sorted(loaded["notes"]) == [  # type: ignore[call-overload]
        f"docker context in {zero_dir}: skipped: meta.json is not a regular file",
        f"docker context in {fifo_dir}: skipped: meta.json is not a regular file",
    ]


def test_a_machine_address_urlsplit_refuses_is_skipped_with_a_note(tmp_path, certs):
    store = tmp_path / "machine"
    add_machine(store, "good", "127.0.0.1", certs)
    add_machine(store, "bad", "127.0.0.1:1/x?y#", certs)
    path = tmp_path / "fleet.yml"
    path.write_text(f"discover:\n  docker_machine: {store}\n")
    loaded = load(str(path), BASE, {})
    assert [t.name for t in loaded.targets] == ["good"]
    assert loaded.notes == (
        "docker-machine 'bad': skipped: 'tcp://[127.0.0.1:1/x?y#]:2376' is not a valid address:"
        " Invalid IPv6 URL",
    )


def test_a_context_with_a_cert_but_no_key_is_skipped_with_one_line(tmp_path, certs):
    config_dir = tmp_path / "docker"
    add_context(config_dir, "halfcert", "tcp://127.0.0.1:2376", certs)
    add_context(config_dir, "whole", "tcp://127.0.0.1:2377", certs)
    digest = next(
        p.parent.name
        for p in (config_dir / "contexts" / "meta").glob("*/meta.json")
        if '"halfcert"' in p.read_text()
    )
    (config_dir / "contexts" / "tls" / digest / "docker" / "key.pem").unlink()
    path = tmp_path / "fleet.yml"
    path.write_text(f"discover:\n  docker_contexts: {config_dir}\n")
    loaded = load(str(path), BASE, {})
    assert [t.name for t in loaded.targets] == ["whole"]
    assert loaded.notes == ("docker context 'halfcert': skipped: it has a cert.pem but no key.pem",)


def test_a_misspelt_discovery_directory_is_said(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text("discover:\n  docker_contexts: /srv/no-such-dir\n")
    loaded = load(str(path), BASE, {})
    assert loaded.targets == ()
    assert loaded.notes == (
        "discover.docker_contexts: /srv/no-such-dir is not a directory: nothing found",
    )


def test_a_web_config_key_typo_names_the_file(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_user:\n  a: b\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(str(path))
    assert str(err.value) == f"{path} has unknown key 'basic_auth_user'"
    path.write_text("tls_server_config:\n  cert_fil: x\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(str(path))
    assert str(err.value) == f"{path}: tls_server_config has unknown key 'cert_fil'"


@pytest.mark.parametrize("text", [DEEP, BIG_INT])
def test_start_up_with_a_hostile_file_exits_2_with_one_line(tmp_path, text):
    path = tmp_path / "fleet.yml"
    path.write_text(text)
    result = subprocess.run(
        [*exporter_command(), "--config.file", str(path)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"docker-inventory-exporter: {path}: ")


def test_a_reload_that_fails_keeps_the_targets_and_reloading_alive(tmp_path, run_exporter):
    engine = synthetic_engine()
    try:
        path = tmp_path / "fleet.yml"
        good = (
            "defaults:\n  collect_interval: 1s\n  collect_timeout: 500ms\n"
            "  disk_usage_interval: 0\ntargets:\n"
            f"  - name: a\n    host: {engine.url}\n"
        )
        path.write_text(good)
        exp = run_exporter(
            "--config.file", str(path), "--config.watch-interval", "0", env=clean_env()
        )
        wait_until(lambda: exp.get("/metrics?target=a")[0] == 200, what="a served")
        for n, hostile in enumerate((DEEP, BIG_INT), start=1):
            path.write_text(hostile)
            os.kill(exp.pid, signal.SIGHUP)

            def refused(n: int = n) -> bool:
                return bool(exp.log(400).count("reload (SIGHUP) failed") == n)

            wait_until(refused, 10.0, what=f"hostile file {n} refused: {exp.log(5)}")
            own = exp.samples()
            assert value(own, "docker_exporter_config_last_reload_successful") == 0.0
            assert exp.get("/metrics?target=a")[0] == 200
        path.write_text(good + f"  - name: b\n    host: {engine.url}\n")
        os.kill(exp.pid, signal.SIGHUP)
        wait_until(
            lambda: exp.get("/metrics?target=b")[0] == 200,
            10.0,
            what=f"b added by a SIGHUP after two failed reloads: {exp.log(5)}",
        )
        own = exp.samples()
        assert value(own, "docker_exporter_config_last_reload_successful") == 1.0
        assert "Traceback" not in exp.log(400)
    finally:
        engine.close()
