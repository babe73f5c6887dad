"""The HTTP server: asyncio and h11, bounded in threads, memory, time and connections.

Why not a thread per connection (prometheus_client's own server, cheroot) or waitress:
measured with ``python -m tests.bench_servers``, a thread per connection grew to 301 threads
under 300 slow-header connections and 501 under 500 clients that never read; cheroot's 10
workers were all held by slow headers, so scrapes timed out; waitress stayed at 5 threads
but spilled each unread 6 MB answer into a temporary file (1,007 open files) and a scrape
took up to 7.2 s. None of them can also serve TLS with exporter-toolkit's options.

Here one event-loop thread does all socket I/O, so a slow or idle client costs a socket
and a few kilobytes (some 30 KB over TLS, OpenSSL's own state mostly), never a thread:

- the request head must arrive within ``header_timeout`` of its first byte, and is at most
  ``max_header_bytes`` (request line included; the request line alone at most
  ``max_request_line``); an idle keep-alive connection is closed after ``idle_timeout``;
- an answer is written in chunks as the client reads it, within ``write_timeout``; the
  rendered exposition is shared, never copied per client;
- the WSGI app runs in a pool of ``workers`` threads; at most ``max_requests`` requests are
  in there at once (503 beyond, as promhttp does; 0 is unlimited);
- basic auth answers from its caches of checked credentials on the loop; a bcrypt check
  runs in its own ``auth_workers`` threads, at most ``max_auth_checks`` at once (429
  beyond), so wrong passwords never take the scrapes' workers or budget;
- at ``max_connections`` (kept below the open-file limit) the connection that has made no
  progress for longest is closed to admit the new one, so /metrics stays reachable;
- the listen backlog is ``backlog`` (the kernel caps it at net.core.somaxconn).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import asyncio.sslproto
import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import h11

from .priority import answering, waiting
from .webconfig import BasicAuth, TLSReloader

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy"})  # liveness only: tells nothing
# Answered on the event loop itself (the app's answer for them never blocks): liveness and
# readiness never wait behind scrapes, a full worker pool or a reload.
LOOP_PATHS = frozenset({"/-/healthy", "/-/ready"})
_CHUNK = 256 * 1024
# A connection closed after an answer waits this long at most, dropping up to this many
# bytes, for the client to close first (HTTPServer._linger)
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024
# what Go's net/http answers a plain HTTP request on a TLS port, byte for byte
PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


# asyncio's TLS layer reads into a 256 KiB buffer per connection (its SSLProtocol.max_size):
# 1,000 clients that hold a TLS connection open would cost 250 MB for buffers alone. What
# it reads goes into OpenSSL's own buffer, which takes a record (16 KiB at most) in as many
# pieces as it comes, so 4 KiB reads lose nothing (a request is a few hundred bytes).
TLS_READ_BUFFER = 4 * 1024
# An answer goes out in chunks of this size as the client reads it. Over TLS each chunk is
# encrypted into a copy of its own, so a smaller one keeps a client that never reads cheap:
# 8 KiB costs 1.25x the CPU of 16 KiB for an uncompressed answer (none for gzip, which is
# what Prometheus asks for), for 11 KB less per client that never reads.
_TLS_CHUNK = 8 * 1024
# The encrypted bytes a client has not read yet, above what the kernel holds, and the
# plaintext waiting to be encrypted: 4 KiB each over TLS.
_TLS_WRITE_BUFFER = 4 * 1024


class _SmallBufferSSLProtocol(asyncio.sslproto.SSLProtocol):
    max_size = TLS_READ_BUFFER


class _EventLoop(asyncio.SelectorEventLoop):
    """The selector loop, its TLS connections with ``TLS_READ_BUFFER`` read buffers."""

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        waiter: asyncio.Future[Any],
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
        **timeouts: Any,
    ) -> asyncio.Transport:
        # asyncio's own body of this method (3.9 to 3.13), with the smaller-buffer protocol
        ssl_protocol = _SmallBufferSSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        raw = asyncio.selector_events._SelectorSocketTransport(  # type: ignore[attr-defined]
            self, rawsock, ssl_protocol, extra=extra, server=server
        )
        # the encrypted bytes a client has not read yet: 4 KiB, not asyncio's 64 KiB
        raw.set_write_buffer_limits(high=_TLS_WRITE_BUFFER)
        return ssl_protocol._app_transport


@dataclass(frozen=True)
class Limits:
    max_requests: int = 40
    workers: int = 4
    max_connections: int = 1000
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    write_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_request_line: int = 8 * 1024
    max_body_bytes: int = 64 * 1024
    backlog: int = 1024
    # bcrypt checks of credentials no cache knows: their own threads and their own budget,
    # so strangers guessing passwords never take the scrapes' workers or --web.max-requests
    auth_workers: int = 1
    max_auth_checks: int = 8  # waiting or running; beyond, 429
    # wrong credentials are answered after this pause (on the loop: it costs no thread), so
    # a client guessing passwords cannot make the exporter spin on 401s and 429s
    auth_failure_delay: float = 1.0


def connection_limit(wanted: int, reserve: int = 64) -> int:
    """Raise the soft open-file limit to the hard one, and keep ``wanted`` below it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = min(hard, 1 << 16) if hard != resource.RLIM_INFINITY else 1 << 16
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return max(16, min(wanted, soft - reserve))
    except ImportError:  # not on POSIX
        return wanted


async def drained(writer: asyncio.StreamWriter) -> None:
    """``writer.drain()``: while it waits for the client to read, collections run."""
    with waiting():
        await writer.drain()


class _Connection:
    __slots__ = ("busy", "progress", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.busy = False  # the app is answering it: never evicted
        self.progress = time.monotonic()


class _Reject(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HTTPServer:
    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        limits: Limits = Limits(),
        tls: TLSReloader | None = None,
        auth: BasicAuth | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        at_once: Callable[[dict[str, Any]], bool] = lambda environ: False,
    ) -> None:
        """``at_once(environ)``: True when the app answers that request without blocking
        (bytes it already holds), so that the loop answers it itself, as LOOP_PATHS."""
        self.app = app
        self.at_once = at_once
        self.limits = limits
        self.tls = tls
        self.auth = auth
        self.extra_headers = [(k.encode(), v.encode()) for k, v in headers]
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="http")
        self.auth_pool = ThreadPoolExecutor(limits.auth_workers, thread_name_prefix="auth")
        self.auth_in_flight = 0
        self.auth_refused = 0  # 429s: the bcrypt budget was spent
        self.connections: dict[_Connection, None] = {}
        self.in_flight = 0
        self.evicted = 0
        self._limit_logged = False
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((host or "0.0.0.0", port))  # OSError when taken: the caller says so
        self.sock.listen(limits.backlog)
        self.port = self.sock.getsockname()[1]
        self.loop = _EventLoop()
        # accepted, TLS handshake not done yet: the task, and when it was accepted
        self._handshaking: dict[asyncio.Task[None], float] = {}
        self._accept_error_logged = False
        self.thread = threading.Thread(target=self._run, name="http-loop", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.sock.setblocking(False)
        self._accepting = self.loop.create_task(self._accept_loop())
        self.loop.run_forever()

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.pool.shutdown(wait=False)
        self.auth_pool.shutdown(wait=False)

    # --- connections ----------------------------------------------------------------------
    async def _accept_loop(self) -> None:
        """One connection at a time, room made for it first: the file table never fills."""
        while True:
            self._make_room()
            try:
                client, _ = await self.loop.sock_accept(self.sock)
            except OSError as exc:  # EMFILE and the like: wait, never spin
                if not self._accept_error_logged:
                    self._accept_error_logged = True
                    log.error("cannot accept connections: %s", exc.strerror or exc)
                await asyncio.sleep(0.5)
                continue
            self._accept_error_logged = False
            task = self.loop.create_task(self._start_connection(client))
            self._handshaking[task] = time.monotonic()
            # An accept that succeeds at once does not yield: let the new connection start,
            # and evicted ones really close, before the next accept.
            await asyncio.sleep(0)

    @property
    def pending(self) -> int:
        """Connections accepted whose TLS handshake (or first byte) is still awaited."""
        return len(self._handshaking)

    def _make_room(self) -> None:
        """At the limit, close the connection that has made no progress for longest: an
        idle one, or one whose handshake has not come (those count against the limit)."""
        limit = self.limits.max_connections
        if len(self.connections) + self.pending < limit:
            if self._limit_logged and len(self.connections) + self.pending < limit * 0.9:
                self._limit_logged = False
            return
        if not self._limit_logged:
            self._limit_logged = True
            log.warning("%d connections open, the limit: closing the ones idle the longest", limit)
        idle = [c for c in self.connections if not c.busy]
        oldest_idle = min(idle, key=lambda c: c.progress) if idle else None
        oldest_handshake = min(self._handshaking.items(), key=lambda kv: kv[1], default=None)
        if oldest_handshake is not None and (
            oldest_idle is None or oldest_handshake[1] <= oldest_idle.progress
        ):
            task = oldest_handshake[0]
            del self._handshaking[task]
            task.cancel()  # its socket is closed as the cancellation lands
            self.evicted += 1
        elif oldest_idle is not None:
            self._drop(oldest_idle)
            self.evicted += 1

    def _drop(self, conn: _Connection) -> None:
        self.connections.pop(conn, None)
        conn.writer.transport.abort()

    async def _readable(self, client: socket.socket, timeout: float) -> None:
        """Wait until the socket has data (or EOF); TimeoutError after ``timeout``."""
        ready: asyncio.Future[None] = self.loop.create_future()
        fd = client.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_reader(fd, wake)
        try:
            await asyncio.wait_for(ready, timeout)
        finally:
            self.loop.remove_reader(fd)

    async def _is_tls(self, client: socket.socket) -> bool:
        """Whether the client starts a TLS handshake; a plain HTTP request gets what Go's
        servers answer (400, "Client sent an HTTP request to an HTTPS server.")."""
        await self._readable(client, self.limits.header_timeout)
        first = client.recv(1, socket.MSG_PEEK)
        if first == b"\x16":  # a TLS handshake record
            return True
        if first.isalpha():  # the method of a request in plain HTTP
            with contextlib.suppress(OSError):
                client.recv(self.limits.max_header_bytes)  # read, so closing sends no RST
                client.send(PLAIN_HTTP_TO_TLS)
                client.shutdown(socket.SHUT_WR)
        return False

    async def _start_connection(self, client: socket.socket) -> None:
        """Streams over an accepted socket; the TLS handshake first, within its deadline."""
        try:
            if self.tls is not None and not await self._is_tls(client):
                client.close()
                return
            reader = asyncio.StreamReader(limit=self.limits.max_header_bytes)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: protocol,
                client,
                ssl=self.tls.listening if self.tls else None,
                ssl_handshake_timeout=self.limits.header_timeout if self.tls else None,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.CancelledError):
            client.close()  # a failed or stalled handshake, or evicted to make room
            return
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._handshaking.pop(task, None)
        writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
        await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer)
        self.connections[conn] = None
        # over TLS the socket's own transport buffers the encrypted copy as well
        writer.transport.set_write_buffer_limits(high=_TLS_WRITE_BUFFER if self.tls else 64 * 1024)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        clean = False
        try:
            while True:
                request = await self._read_request(h, reader, conn)
                if request is None:
                    clean = True
                    return
                await self._respond(h, request, writer, conn)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    clean = True
                    return
                h.start_next_cycle()
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, h11.ProtocolError):
            pass  # the client left, stalled past a deadline, or broke the protocol
        finally:
            if clean and h.our_state is h11.MUST_CLOSE and not reader.at_eof():
                await self._linger(reader, writer, conn)
            self.connections.pop(conn, None)
            transport = writer.transport
            if clean and transport.get_write_buffer_size():
                # the end of an answer is still buffered: let it go out, within a grace
                writer.close()
                self.loop.call_later(self.limits.header_timeout, transport.abort)
            else:
                # Nothing left to send, or a client that stalled: close() would wait for
                # it (and, under TLS, for a close_notify that clients often never send).
                transport.abort()

    async def _linger(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        """A lingering close (nginx's lingering_close, Go's closeWriteAndWait), after an
        answer that ends the connection (an error, or a client's ``Connection: close``) with
        the client possibly still sending: closing a socket with unread input makes the
        kernel reset the connection, and the reset can take the answer with it. So the
        answer and a FIN go out, and what comes meanwhile is read and dropped until the
        client closes: ``LINGER_SECONDS`` and ``LINGER_BYTES`` at most. The connection
        stays counted and is the first evicted at the limit. Not over TLS (no half-close)."""
        transport = writer.transport
        if not transport.can_write_eof() or transport.is_closing():
            return
        conn.progress = 0.0  # the first to go when room is needed
        dropped = 0
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            transport.write_eof()  # once the answer is out
            deadline = time.monotonic() + LINGER_SECONDS
            while dropped <= LINGER_BYTES:
                data = await asyncio.wait_for(
                    reader.read(65536), max(deadline - time.monotonic(), 0.0)
                )
                if not data:
                    return  # the client closed: nothing unread
                dropped += len(data)

    async def _read_request(
        self, h: h11.Connection, reader: asyncio.StreamReader, conn: _Connection
    ) -> h11.Request | None:
        """The next request, its (small) body read and dropped; None when the client left."""
        deadline: float | None = None  # set by the first byte of the request
        request: h11.Request | None = None
        body = 0
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if "exceeds" in str(exc) or "too long" in str(exc):
                    status = 431
                await self._reject(h, conn, _Reject(status, "Bad request"))
                return None
            if event is h11.NEED_DATA:
                now = time.monotonic()
                wait = self.limits.idle_timeout if deadline is None else deadline - now
                if wait <= 0:
                    await self._reject(h, conn, _Reject(408, "Request Timeout"))
                    return None
                try:
                    data = await asyncio.wait_for(reader.read(65536), wait)
                except asyncio.TimeoutError:
                    if deadline is not None or h.their_state is not h11.IDLE:
                        await self._reject(h, conn, _Reject(408, "Request Timeout"))
                    return None
                if deadline is None:
                    deadline = time.monotonic() + self.limits.header_timeout
                conn.progress = time.monotonic()
                h.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                line = len(event.method) + len(event.target) + 11
                if line > self.limits.max_request_line:
                    await self._reject(h, conn, _Reject(414, "URI Too Long"))
                    return None
                # h11 bounds only a head still incomplete; a whole one in a read is not
                head = line + sum(len(k) + len(v) + 4 for k, v in event.headers.raw_items())
                if head > self.limits.max_header_bytes:
                    await self._reject(h, conn, _Reject(431, "Request Header Fields Too Large"))
                    return None
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > self.limits.max_body_bytes:
                    await self._reject(h, conn, _Reject(413, "Content Too Large"))
                    return None
            elif isinstance(event, h11.EndOfMessage):
                return request
            else:  # ConnectionClosed, or PAUSED after a request we have not answered
                return None

    async def _reject(self, h: h11.Connection, conn: _Connection, reject: _Reject) -> None:
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{reject.reason}\n".encode()
        headers = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"),
            *self.extra_headers,
        ]
        with contextlib.suppress(h11.ProtocolError):
            data = h.send(h11.Response(status_code=reject.status, headers=headers))
            data = (data or b"") + (h.send(h11.Data(data=body)) or b"")
            data += h.send(h11.EndOfMessage()) or b""
            conn.writer.write(data)
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(conn.writer.drain(), 1.0)

    # --- requests -------------------------------------------------------------------------
    async def _respond(
        self,
        h: h11.Connection,
        request: h11.Request,
        writer: asyncio.StreamWriter,
        conn: _Connection,
    ) -> None:
        denied = await self._authenticate(request)
        # from here until the answer is handed to the socket, collections step aside
        with answering():
            await self._answer(h, request, writer, conn, denied)

    async def _answer(
        self,
        h: h11.Connection,
        request: h11.Request,
        writer: asyncio.StreamWriter,
        conn: _Connection,
        denied: tuple[str, list[tuple[bytes, bytes]], bytes] | None,
    ) -> None:
        max_requests = self.limits.max_requests
        status: str
        headers: list[tuple[bytes, bytes]]
        body: bytes
        environ = self._environ(request, writer) if denied is None else {}
        if denied is not None:
            status, headers, body = denied
        elif environ["PATH_INFO"] in LOOP_PATHS or self.at_once(environ):
            # answered here, at once: never behind scrapes, the workers or a reload, and
            # without handing the interpreter to a worker and back
            status, headers, body = self._call(environ)
        elif max_requests and self.in_flight >= max_requests:
            status = "503 Service Unavailable"
            headers = [(b"Content-Type", b"text/plain")]
            body = b"Too many concurrent requests (--web.max-requests)\n"
        else:
            self.in_flight += 1
            conn.busy = True
            try:
                status, headers, body = await self.loop.run_in_executor(
                    self.pool, self._call, environ
                )
            finally:
                self.in_flight -= 1
                conn.busy = False
        headers = [*headers, *self.extra_headers]
        if not any(k.lower() == b"content-length" for k, _ in headers):
            headers.append((b"Content-Length", str(len(body)).encode()))
        head = request.method == b"HEAD"

        async def write() -> None:
            code, _, reason = status.partition(" ")
            response = h11.Response(status_code=int(code), headers=headers, reason=reason.encode())
            writer.write(h.send(response) or b"")
            await drained(writer)
            if not head:
                view = memoryview(body)
                size = _TLS_CHUNK if self.tls else _CHUNK
                for start in range(0, len(view), size):
                    # a view into the shared rendering: no copy per client
                    chunk = h11.Data(data=view[start : start + size])  # type: ignore[arg-type]
                    # one write per part: writelines joins them, a copy of each chunk
                    # (Python < 3.12)
                    for part in h.send_with_data_passthrough(chunk) or []:
                        writer.write(part)
                    await drained(writer)
                    conn.progress = time.monotonic()
            writer.write(h.send(h11.EndOfMessage()) or b"")
            await drained(writer)

        await asyncio.wait_for(write(), self.limits.write_timeout)

    def _environ(self, request: h11.Request, writer: asyncio.StreamWriter) -> dict[str, Any]:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        peer = writer.get_extra_info("peername") or ("", 0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii", "replace"),
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode(),
            "REMOTE_ADDR": str(peer[0]),
            "wsgi.url_scheme": "https" if self.tls else "http",
            "wsgi.input": None,
            "wsgi.errors": sys.stderr,
        }
        for name, value in request.headers:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ

    async def _authenticate(
        self, request: h11.Request
    ) -> tuple[str, list[tuple[bytes, bytes]], bytes] | None:
        """None when the request may go on, else the answer (401, or 429 over budget).

        The caches answer on the loop; a bcrypt check runs in the auth pool, at most
        ``max_auth_checks`` at once, never in the scrapes' pool nor their budget.
        """
        if self.auth is None:
            return None
        path = unquote(request.target.decode("latin-1").partition("?")[0], "latin-1")
        if path in UNAUTHENTICATED_PATHS:
            return None
        # as the WSGI environ joins them: two Authorization headers are never valid
        given = [v.decode("latin-1") for k, v in request.headers if k == b"authorization"]
        verdict = self.auth.precheck(",".join(given) if given else None)
        if not isinstance(verdict, bool):
            if self.auth_in_flight >= self.limits.max_auth_checks:
                self.auth_refused += 1
                await asyncio.sleep(self.limits.auth_failure_delay)
                return (
                    "429 Too Many Requests",
                    [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Retry-After", b"1")],
                    b"Too many authentication attempts at once\n",
                )
            self.auth_in_flight += 1
            try:
                verdict = await self.loop.run_in_executor(self.auth_pool, self.auth.verify, verdict)
            finally:
                self.auth_in_flight -= 1
        if verdict:
            return None
        if given:  # credentials, and wrong: a browser's first request without any is not
            await asyncio.sleep(self.limits.auth_failure_delay)
        return (
            "401 Unauthorized",
            [
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"WWW-Authenticate", b'Basic realm="docker-inventory-exporter"'),
            ],
            b"Unauthorized\n",
        )

    def _call(self, environ: dict[str, Any]) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
        """In a pool thread (on the loop for LOOP_PATHS): the app (authentication was done
        before)."""
        out: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            out["status"], out["headers"] = status, headers

        chunks = list(self.app(environ, start_response))
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out["headers"]]
        return str(out["status"]), headers, body
