"""``--healthcheck``: is the exporter on this host (or in this container) answering?

A container's HEALTHCHECK runs ``docker-inventory-exporter --healthcheck`` with no other
flag. It then reads the flags of the exporter process itself from /proc (PID 1, or the
exporter under an init such as ``docker run --init``), so it follows whatever
``--web.listen-address`` and ``--web.config.file`` the container was started with: no
variable to keep in sync. Given either flag itself, it uses its own flags instead.

It asks ``/-/healthy``, which needs no password. Under TLS it does not verify the server
(this is a liveness check over loopback), but it does check that the server presents the
certificate of its web config. A server that requires client certificates refuses the
check's request, having no certificate to give: reaching that refusal with the right server
certificate counts as healthy.
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from .webconfig import TLSServerConfig, WebConfig

PROG = "docker-inventory-exporter"


def _exporter_args(cmdline: list[str]) -> list[str] | None:
    for i, arg in enumerate(cmdline):
        if Path(arg).name == PROG or cmdline[i : i + 2] == ["-m", "exporter"]:
            args = cmdline[i + (1 if Path(arg).name == PROG else 2) :]
            return None if "--healthcheck" in args else args
    return None


def running_exporter_args(proc: Path = Path("/proc")) -> list[str] | None:
    """The flags of the lowest-numbered exporter process visible here, if any."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        args = _exporter_args([a.decode(errors="replace") for a in raw.split(b"\0") if a])
        if args is not None:
            return args
    return None


def explicit(argv: Sequence[str]) -> bool:
    """Whether the healthcheck was told where to look."""
    return any(a.split("=")[0] in ("--web.listen-address", "--web.config.file") for a in argv)


def check(host: str, port: int, web: WebConfig, timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for the exporter at host:port."""
    host = host if host and host not in ("0.0.0.0", "::") else "127.0.0.1"
    where = f"{'[' + host + ']' if ':' in host else host}:{port}"
    tls = web.tls
    try:
        if tls is None:
            conn: http.client.HTTPConnection = http.client.HTTPConnection(
                host, port, timeout=timeout
            )
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        try:
            conn.connect()
            if tls is not None and not _presents(conn, tls):
                return False, f"{where}: the server's certificate is not {tls.cert_file}"
            conn.request("GET", "/-/healthy")
            status = conn.getresponse().status
        finally:
            conn.close()
    except (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
        if tls is not None and tls.requires_client_cert:
            return True, f"{where}: TLS answering, client certificate required ({exc})"
        return False, f"{where}: {exc}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{where}: {exc}"
    return status == 200, f"{where}: /-/healthy answered {status}"


def _presents(conn: http.client.HTTPConnection, tls: TLSServerConfig) -> bool:
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):
        return False
    served = sock.getpeercert(binary_form=True)
    try:
        pem = Path(tls.cert_file).read_text()
    except OSError:
        return True  # not readable by the checking user: the handshake itself must do
    return served == ssl.PEM_cert_to_DER_cert(
        pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
