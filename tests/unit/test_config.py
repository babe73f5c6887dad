"""Flags and DOCKER_* variables resolved with the docker CLI's meaning."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from exporter.config import (
    FLAG_GROUPS,
    JOB_FLAGS,
    JOB_SETTINGS,
    ConfigError,
    JobSchedule,
    TLSSettings,
    job_schedule,
    label_name,
    parse_duration,
    parse_interval,
    parse_label_keys,
    parse_listen_address,
    parse_resources,
    resolve_engine,
)
from tests.support.certs import generate_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_certs(tmp_path_factory.mktemp("tls"))[0]


def test_default_is_the_local_socket():
    engine, warnings = resolve_engine({})
    assert (engine.host, engine.tls, warnings) == ("unix:///var/run/docker.sock", None, ())


def test_tls_verify_from_environment(certs):
    env = {
        "DOCKER_HOST": "tcp://10.0.0.5:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
    }
    engine, warnings = resolve_engine(env)
    assert engine.host == "tcp://10.0.0.5:2376"
    assert engine.tls == TLSSettings(
        str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"), True
    )
    assert warnings == ()


def test_tls_verify_zero_still_verifies_like_the_cli(certs):
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "0", "DOCKER_CERT_PATH": str(certs)}
    engine, _ = resolve_engine(env)
    assert engine.tls is not None and engine.tls.verify is True


def test_docker_tls_means_tls_without_verification(certs):
    env = {"DOCKER_HOST": "tcp://h", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(certs)}
    engine, warnings = resolve_engine(env)
    assert engine.host == "tcp://h:2376"
    assert engine.tls == TLSSettings(None, str(certs / "cert.pem"), str(certs / "key.pem"), False)
    assert len(warnings) == 1 and "not checked" in warnings[0]


def test_flags_override_environment(certs, tmp_path):
    other = generate_certs(tmp_path / "other")[0]
    env = {
        "DOCKER_HOST": "tcp://env:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
    }
    engine, _ = resolve_engine(
        env,
        host="tcp://127.0.0.1:12376",
        ca=str(other / "ca.pem"),
        cert=str(other / "cert.pem"),
        key=str(other / "key.pem"),
    )
    assert engine.host == "tcp://127.0.0.1:12376"
    assert engine.tls == TLSSettings(
        str(other / "ca.pem"), str(other / "cert.pem"), str(other / "key.pem"), True
    )


def test_client_cert_without_verification_by_flag(certs):
    engine, warnings = resolve_engine(
        {},
        host="tcp://1.2.3.4:2376",
        cert=str(certs / "cert.pem"),
        key=str(certs / "key.pem"),
        verify=False,
    )
    assert engine.tls == TLSSettings(None, str(certs / "cert.pem"), str(certs / "key.pem"), False)
    assert warnings


def test_a_ca_flag_means_verification(certs):
    engine, _ = resolve_engine({}, host="tcp://h:1", ca=str(certs / "ca.pem"))
    assert engine.tls == TLSSettings(str(certs / "ca.pem"), None, None, True)


def test_plain_tcp():
    engine, _ = resolve_engine({"DOCKER_HOST": "tcp://127.0.0.1:2375"})
    assert (engine.host, engine.tls) == ("tcp://127.0.0.1:2375", None)


def test_an_empty_docker_host_is_unset_like_the_cli():
    """``DOCKER_HOST=`` means the default socket, as for the docker CLI (``DOCKER_HOST=
    docker context inspect`` shows unix:///var/run/docker.sock); an empty flag is an error."""
    engine, _ = resolve_engine({"DOCKER_HOST": ""})
    assert (engine.host, engine.tls) == ("unix:///var/run/docker.sock", None)
    with pytest.raises(ConfigError, match=r"^--docker\.host is empty;"):
        resolve_engine({"DOCKER_HOST": "tcp://h:2375"}, host="")


def test_env_tls_ignored_for_sockets_like_the_cli():
    engine, _ = resolve_engine({"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "unix:///run/d.sock"})
    assert (engine.host, engine.tls) == ("unix:///run/d.sock", None)


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({"DOCKER_HOST": "ssh://me@host"}, {}, "DOCKER_HOST 'ssh://me@host' is not a unix:// or"),
        ({"DOCKER_HOST": "localhost:2375"}, {}, "is not a unix:// or tcp:// address"),
        ({"DOCKER_HOST": "tcp://h:notaport"}, {}, "has an invalid port"),
        ({"DOCKER_HOST": "tcp://"}, {}, "is not tcp://HOST:PORT"),
        ({"DOCKER_HOST": "unix://relative.sock"}, {}, "absolute socket path"),
        ({}, {"host": "unix:///x.sock", "ca": "/ca.pem"}, "TLS flags need a tcp://"),
        (
            {"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/nope"},
            {},
            "cannot read the engine CA file /nope/ca.pem: No such file or directory",
        ),
        ({}, {"host": "tcp://h:1", "cert": "/c.pem"}, "a client certificate needs its key"),
    ],
)
def test_bad_engine_configuration_is_one_sentence(env, kwargs, message):
    with pytest.raises(ConfigError) as err:
        resolve_engine(env, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_mismatched_or_non_pem_files_are_rejected(certs, tmp_path):
    other = generate_certs(tmp_path / "other")[0]
    with pytest.raises(ConfigError, match="not a matching PEM pair"):
        resolve_engine(
            {},
            host="tcp://h:1",
            cert=str(certs / "cert.pem"),
            key=str(other / "key.pem"),
            verify=False,
        )
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        resolve_engine({}, host="tcp://h:1", ca=str(junk))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15),
        ("5m", 300),
        ("1h", 3600),
        ("500ms", 0.5),
        ("2", 2),
        ("1.5s", 1.5),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1d2h3m4s5ms", 93784.005),
    ],
)
def test_durations_in_prometheus_syntax(text, seconds):
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "s", "1h1h", "30m1h", "1.5h30m"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text, "--x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1s", "'-1s' is negative"),
        ("80000000h", "longer than the maximum of 1w"),
        ("8d", "longer than the maximum of 1w"),
    ],
)
def test_durations_out_of_bounds(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_duration(text, "--x")


def test_intervals_have_a_floor():
    assert parse_interval("1s", "--x") == 1.0
    with pytest.raises(ConfigError, match="'1ms' is shorter than 1s"):
        parse_interval("1ms", "--x")


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("tcp://user:secret@127.0.0.1:2376", "carries user info, which would be dropped"),
        ("tcp://127.0.0.1:2376?tls=1", "has a query or fragment"),
        ("unix:///var/run/docker.sock?x=1", "has a query or fragment"),
        ("", "--docker.host is empty"),
        ("  ", "--docker.host is empty"),
    ],
)
def test_engine_addresses_that_would_lose_something_are_refused(host, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_engine({}, host=host)


def test_an_encrypted_client_key_is_refused_without_a_prompt(certs, tmp_path):
    encrypted = tmp_path / "encrypted-key.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(certs / "key.pem"), "-aes256", "-passout", "pass:x",
         "-out", str(encrypted)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="is encrypted; give it without a pass phrase"):
        resolve_engine(
            {}, host="tcp://h:1", cert=str(certs / "cert.pem"), key=str(encrypted), verify=False
        )


def test_zero_duration_only_where_allowed():
    assert parse_duration("0", "--x", allow_zero=True) == 0
    with pytest.raises(ConfigError, match="longer than 0"):
        parse_duration("0s", "--x")


def test_listen_addresses():
    assert parse_listen_address(":9487") == ("", 9487)
    assert parse_listen_address("127.0.0.1:1") == ("127.0.0.1", 1)
    assert parse_listen_address("[::1]:9487") == ("::1", 9487)
    for bad in ("9487", "host:", "h:70000", "h:0"):
        with pytest.raises(ConfigError):
            parse_listen_address(bad)


def test_label_keys_are_sanitized_and_collisions_rejected():
    assert label_name("com.docker.compose.project") == "label_com_docker_compose_project"
    assert label_name("a-b/c") == "label_a_b_c"
    assert parse_label_keys(" a , b,a,") == ("a", "b")
    with pytest.raises(ConfigError, match="both become label_a_b"):
        parse_label_keys("a.b,a-b")


def test_resources():
    assert parse_resources("images, volumes") == ("images", "volumes")
    with pytest.raises(ConfigError, match="unknown 'layers'"):
        parse_resources("images,layers")


@pytest.mark.parametrize("setting", JOB_SETTINGS, ids=lambda s: s.job)
def test_every_job_is_validated_the_same_way(setting):
    interval, timeout = JOB_FLAGS[setting.job]
    names = (interval.name, timeout.name)
    assert job_schedule(setting, "1m", "30s", names) == JobSchedule(60, 30)
    assert job_schedule(setting, "10s", "10s", names) == JobSchedule(10, 10)
    with pytest.raises(ConfigError) as err:
        job_schedule(setting, "10s", "11s", names)
    assert str(err.value) == f"{timeout.name} (11s) must not be longer than {interval.name} (10s)"
    # a timeout not given is the default, shortened to the interval where it is longer
    default = parse_duration(setting.timeout, "")
    assert job_schedule(setting, "1h", None, names) == JobSchedule(3600, default)
    assert job_schedule(setting, "1s", None, names) == JobSchedule(1, min(1, default))
    assert job_schedule(setting, "1h", None, names, 7.0) == JobSchedule(3600, 7)
    with pytest.raises(ConfigError) as err:
        job_schedule(setting, "1m", "0", names)
    assert str(err.value) == f"{timeout.name} must be longer than 0"
    if setting.optional:
        assert job_schedule(setting, "0", "1h", names) == JobSchedule(0, 3600)
        assert job_schedule(setting, "0", None, names) == JobSchedule(0, default)
    else:
        with pytest.raises(ConfigError) as err:
            job_schedule(setting, "0", "1s", names)
        assert str(err.value) == f"{interval.name} must be longer than 0"


def test_each_job_has_its_flags_and_keys_once():
    flags = [f.name for pair in JOB_FLAGS.values() for f in pair]
    assert flags == [
        "--collect.interval",
        "--collect.timeout",
        "--collect.disk-usage-interval",
        "--collect.disk-usage-timeout",
        "--collect.container-sizes-interval",
        "--collect.container-sizes-timeout",
        "--collect.swarm-interval",
        "--collect.swarm-timeout",
        "--collect.registry-interval",
        "--collect.registry-timeout",
    ]
    every_flag = [f.name for group in FLAG_GROUPS.values() for f in group]
    assert len(every_flag) == len(set(every_flag))
    assert [(s.interval_key, s.timeout_key) for s in JOB_SETTINGS] == [
        ("collect_interval", "collect_timeout"),
        ("disk_usage_interval", "disk_usage_timeout"),
        ("container_sizes_interval", "container_sizes_timeout"),
        ("swarm_interval", "swarm_timeout"),
        ("registry_interval", "registry_timeout"),
    ]
