"""--web.config.file in exporter-toolkit's format: what it accepts, and one line for the rest."""

from __future__ import annotations

import base64
import ssl

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, parse_web_config
from tests.support.certs import PKI, make_pki
from tests.support.paths import documentation
from tests.support.process import exporter_command


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


def tls(pki: PKI, extra: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        + extra
    )


def test_a_full_config_is_read(pki):
    config = parse_web_config(
        tls(
            pki,
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
            "  min_version: TLS13\n"
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
        )
        + f"basic_auth_users:\n  prometheus: '{HASH}'\n"
        + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        + "    Strict-Transport-Security: max-age=31536000\n"
    )
    assert config.tls is not None
    assert config.tls.requires_client_cert
    assert config.tls.min_version == "TLS13"
    ctx = config.tls.context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert list(config.users) == ["prometheus"]
    assert config.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )


def test_defaults_are_exporter_toolkits(pki):
    config = parse_web_config(tls(pki))
    assert config.tls is not None
    ctx = config.tls.context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
    assert parse_web_config("").tls is None
    assert parse_web_config("{}").users == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: [1]", "tls_server_config must be a mapping"),
        ("tls: {}", "has unknown key 'tls'"),
        ("tls_server_config: {cert_file: /x}", "needs both cert_file and key_file"),
        ("tls_server_config: {cert_file: /no/c, key_file: /no/k}", "cannot read cert_file /no/c"),
        ("a: [", "line 1: not valid YAML"),
        ("basic_auth_users: {u: plain}", "basic_auth_users.u is not a bcrypt hash"),
        ("basic_auth_users: {u: '$2b$10$short'}", "basic_auth_users.u is not a valid bcrypt hash"),
        (
            "http_server_config: {headers: {Server: x}}",
            "HTTP header 'Server' can not be configured",
        ),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}",
            "HTTP header 'X-Frame-Options' can only be deny or sameorigin",
        ),
        ("http_server_config: {timeout: 1}", "http_server_config has unknown key 'timeout'"),
    ],
)
def test_bad_files_are_one_sentence(text, message):
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("[", r"\[")):
        parse_web_config(text)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  client_auth_type: Sometimes\n", "client_auth_type 'Sometimes' is not one of"),
        ("  client_auth_type: RequireAnyClientCert\n", "cannot be done with Python's ssl"),
        ("  client_auth_type: VerifyClientCertIfGiven\n", "needs client_ca_file"),
        ("  client_ca_file: CA\n", "client_auth_type does not verify clients"),
        ("  min_version: TLS14\n", "min_version 'TLS14' is not one of TLS10, TLS11"),
        ("  min_version: TLS13\n  max_version: TLS12\n", "min_version TLS13 is above max_version"),
        ("  cipher_suites: [TLS_FAST]\n", "cipher suite 'TLS_FAST' is not one this exporter"),
        ("  curve_preferences: [X25519]\n", "curve_preferences is not supported"),
        ("  colour: blue\n", "tls_server_config has unknown key 'colour'"),
    ],
)
def test_bad_tls_settings_are_one_sentence(pki, extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_web_config(tls(pki, extra.replace("CA", str(pki.ca))))


def test_a_key_that_does_not_match_the_certificate(pki, tmp_path):
    other = make_pki(tmp_path / "other")
    text = f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {other.server_key}}}"
    with pytest.raises(ConfigError, match="are not a matching PEM certificate and key"):
        parse_web_config(text)


def test_the_cli_exits_2_with_one_line(tmp_path):
    import subprocess

    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /k.pem\n")
    for args in (["--web.config.file", str(bad)], ["--web.config.file", str(tmp_path / "no")]):
        result = subprocess.run(
            [*exporter_command(), *args], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        # the file is named first (issue 20), then what could not be read
        assert lines[0].startswith(f"docker-inventory-exporter: {args[1]}: cannot read ") or (
            lines[0].startswith(f"docker-inventory-exporter: --web.config.file {args[1]}: ")
            and "cannot read: No such file" in lines[0]
        )


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks_and_caches_successes_only():
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.check(header("prometheus", "secret"))
    assert auth.bcrypt_checks == 1
    for _ in range(5):
        assert auth.check(header("prometheus", "secret"))
    assert auth.bcrypt_checks == 1  # cached: a scrape does not pay for bcrypt again
    assert not auth.check(header("prometheus", "wrong"))
    assert not auth.check(header("prometheus", "wrong"))
    assert auth.bcrypt_checks == 2  # a failure is remembered too (issue 20): paid once
    assert not auth.check(header("nobody", "secret"))
    assert auth.bcrypt_checks == 3  # an unknown user costs a bcrypt check too
    for bad in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()):
        assert not auth.check(bad)


def test_no_users_means_no_auth():
    assert BasicAuth({}).check(None)


def test_the_example_in_the_readme_is_valid(pki, tmp_path):
    readme = documentation()
    block = readme.split("```yaml\n# web-config.yml\n", 1)[1].split("```", 1)[0]
    for name, path in (
        ("/etc/exporter/tls/server.pem", pki.server_cert),
        ("/etc/exporter/tls/server-key.pem", pki.server_key),
        ("/etc/exporter/tls/clients-ca.pem", pki.ca),
    ):
        block = block.replace(name, str(path))
    config = parse_web_config(block)
    assert config.tls is not None and config.tls.requires_client_cert and config.users
