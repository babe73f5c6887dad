"""Throwaway TLS material made with the openssl CLI: a CA, a server and a client certificate,
and the same again from an unrelated CA (for the engine harness and the TLS tests)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"


def _openssl(args: Sequence[str]) -> None:
    proc = subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


_CA_EXT = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""

_CLIENT_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _genkey(path: Path) -> None:
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
         str(path)])  # fmt: skip
    path.chmod(0o600)


def _make_ca(directory: Path, cn: str) -> tuple[Path, Path]:
    key, cert, ext = directory / "ca-key.pem", directory / "ca.pem", directory / "ca.ext"
    _genkey(key)
    ext.write_text(_CA_EXT)
    csr = directory / "ca.csr"
    _openssl(["req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr)])
    _openssl(["x509", "-req", "-in", str(csr), "-signkey", str(key), "-days", "3650",
         "-sha256", "-extfile", str(ext), "-out", str(cert)])  # fmt: skip
    csr.unlink()
    ext.unlink()
    return cert, key


def _sign(
    directory: Path,
    stem: str,
    cn: str,
    ext_text: str,
    ca_cert: Path,
    ca_key: Path,
    key_name: str,
    cert_name: str,
) -> None:
    key, cert = directory / key_name, directory / cert_name
    csr, ext = directory / f"{stem}.csr", directory / f"{stem}.ext"
    _genkey(key)
    ext.write_text(ext_text)
    _openssl(["req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr)])
    _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(ext),
         "-out", str(cert)])  # fmt: skip
    csr.unlink()
    ext.unlink()


def generate_certs(
    directory: Path,
    ip_names: Sequence[str] = ("127.0.0.1",),
    dns_names: Sequence[str] = ("localhost",),
) -> tuple[Path, Path]:
    """Create ``directory/certs`` and ``directory/wrong-ca`` with the openssl CLI.

    ``certs``: ca.pem (+ca-key.pem), server-cert.pem/server-key.pem (serverAuth, SAN =
    ``ip_names`` + ``dns_names``) and cert.pem/key.pem, a clientAuth certificate.

    ``wrong-ca``: ca.pem/cert.pem/key.pem of an unrelated CA, the client certificate being
    signed by that other CA (and the same kind of server cert, for completeness).

    Returns ``(certs, wrong_ca)``.
    """
    san = ",".join([f"IP:{ip}" for ip in ip_names] + [f"DNS:{d}" for d in dns_names])
    result: list[Path] = []
    for sub, label in (("certs", "inventory-test-ca"), ("wrong-ca", "unrelated-test-ca")):
        d = directory / sub
        d.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = _make_ca(d, label)
        _sign(d, "server", "localhost", _SERVER_EXT.format(san=san), ca_cert, ca_key,
              "server-key.pem", "server-cert.pem")  # fmt: skip
        _sign(d, "client", "inventory-client", _CLIENT_EXT, ca_cert, ca_key,
              "key.pem", "cert.pem")  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            (d / "ca.srl").unlink()
        result.append(d)
    return result[0], result[1]


@dataclass(frozen=True)
class PKI:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def of(cls, directory: Path) -> PKI:
        """The PKI in a directory made by ``generate_certs`` (``certs`` or ``wrong-ca``)."""
        return cls(
            directory / "ca.pem",
            directory / "server-cert.pem",
            directory / "server-key.pem",
            directory / "cert.pem",
            directory / "key.pem",
        )


def make_pki(directory: Path) -> PKI:
    """A fresh PKI under ``directory``."""
    certs, _ = generate_certs(directory)
    return PKI.of(certs)
