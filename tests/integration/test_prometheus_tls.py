"""A real Prometheus scrapes the exporter over mutual TLS with basic auth, configured with
the README's own web config and scrape config (paths filled in), through its own
``tls_config`` and ``basic_auth``. A second job with a wrong password is refused."""

from __future__ import annotations

import copy

import yaml

from tests.support.certs import make_pki
from tests.support.fake_engine import FakeEngine
from tests.support.paths import documentation, load


def readme_block(first_line: str) -> str:
    """A YAML example of the docs (docs/security.md), by its first line."""
    return documentation().split(f"```yaml\n{first_line}\n", 1)[1].split("```", 1)[0]


def test_prometheus_scrapes_over_mutual_tls_with_basic_auth(run_exporter, run_prometheus, tmp_path):
    pki = make_pki(tmp_path / "pki")
    web = readme_block("# web-config.yml")
    for example, real in (
        ("/etc/exporter/tls/server.pem", pki.server_cert),
        ("/etc/exporter/tls/server-key.pem", pki.server_key),
        ("/etc/exporter/tls/clients-ca.pem", pki.ca),
    ):
        web = web.replace(example, str(real))
    (tmp_path / "web.yml").write_text(web)
    fake = FakeEngine(
        {
            "/version": load("synthetic/version-1.52.json"),
            "/images/json": load("synthetic/images-1.52.json"),
            "/containers/json": load("synthetic/containers-1.52.json"),
        }
    )
    try:
        exp = run_exporter(
            "--docker.host", fake.url, "--collect.disk-usage-interval", "0",
            "--web.config.file", str(tmp_path / "web.yml"), wait_ready=False,
        )  # fmt: skip
        (tmp_path / "password").write_text("change-me\n")
        (tmp_path / "wrong").write_text("guess\n")
        config = yaml.safe_load(readme_block("# prometheus.yml"))
        (job,) = config["scrape_configs"]
        job["tls_config"] = {
            "ca_file": str(pki.ca),
            "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key),
            "server_name": "localhost",
        }
        job["basic_auth"]["password_file"] = str(tmp_path / "password")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{exp.port}"]}]
        job["scrape_interval"] = "1s"
        wrong = copy.deepcopy(job)
        wrong["job_name"] = "wrong-password"
        wrong["basic_auth"]["password_file"] = str(tmp_path / "wrong")
        # a wrong password is answered after a 1 s pause (docs/security.md): a scrape timeout
        # of 1 s (the 1 s interval's) would read a deadline instead of the 401
        wrong["scrape_interval"], wrong["scrape_timeout"] = "5s", "4s"
        config["scrape_configs"].append(wrong)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

        prom = run_prometheus(tmp_path / "prometheus.yml")
        prom.wait_ready()
        result = prom.wait(
            "docker_up 1 scraped over TLS",
            lambda: prom.query('docker_up{job="docker-inventory"} == 1'),
        )
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{exp.port}"

        def refused() -> dict[str, str] | None:
            for target in prom.active_targets():
                if target["labels"]["job"] == "wrong-password" and target["lastError"]:
                    return target  # type: ignore[no-any-return]
            return None

        target = prom.wait("the wrong password refused", refused)
        assert target["health"] == "down"
        assert "401 Unauthorized" in target["lastError"]
    finally:
        fake.close()
