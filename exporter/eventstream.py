"""The engine's event stream: one long-lived ``GET /events`` per target, all on one loop.

A source at the engine floor, like engine.py: it knows the protocol and hands typed
records (events.py) to the target. Every target's stream runs on one asyncio loop in one
thread (``EventLoop``), so a fleet of 200 engines costs one thread, not 200.

- **Filtered at the engine** to the container and image actions the exporter uses:
  healthchecks' ``exec_*`` triples never come.
- **Subscribed before the first list**: the inventory job waits for the first
  subscription (``wait_subscribed``), so no event falls between the list and the stream.
- **Reconnects with ``since``** (the engine time of the newest event counted, or of the
  first subscription), after pauses growing from 0.5 s to 30 s. The engine replays from
  ``since`` inclusive; the counter drops what it already counted.
- **Replay is short**: the engine holds 256 events. On a reconnect, a bounded probe
  counts what the engine holds since ``since`` (unfiltered, up to the new subscription's
  time, lines counted, never parsed); 256 means some may be lost, and
  ``docker_exporter_events_replay_gaps_total`` says so.
- **Quiet or dead**: TCP keepalive ends a connection whose peer vanished; a stream quiet
  for ``idle_resubscribe`` is opened again (not counted as a reconnect): a live engine
  answers at once, a dead one fails, and ``docker_exporter_events_stream_up`` drops.
- **Bounded input**: each line at most ``max_line`` bytes (a longer one is skipped to its
  end), each cause of junk logged once; TLS exactly as the engine client builds it (the
  engine's CA only, never REQUESTS_CA_BUNDLE or SSL_CERT_FILE); a redirect is an error.
- **Podman's OOM kills**: Podman (its answers carry ``Libpod-Api-Version``) sends no ``oom``
  event; a ``die`` with exit code 137 is inspected once (``GET /containers/{id}/json``, one
  at a time, at most ``INSPECT_QUEUE`` waiting) and State.OOMKilled counts the kill. That is
  one request per such event, never per object.
- **Freshness**: an event that changes the inventory asks the target for a collection,
  ``settle`` after it and at most once per window: ``debounce`` (1 s), or four times the
  last collection's duration where that is longer (a 10k-container host). What changed
  goes to ``InventoryChanges``: the inventory job lists only those containers (events.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlencode, urlsplit

import h11

from .config import EngineConfig, TLSSettings
from .engine import quoted
from .events import (
    CHANGES_INVENTORY,
    ENGINE_REPLAY_LIMIT,
    FILTERS,
    OOM_EXIT_CODE,
    EventCounter,
    EventDataError,
    EventRecord,
    EventsSnapshot,
    InventoryChanges,
    NeverStarted,
    parse_event,
    since_param,
)

log = logging.getLogger(__name__)

EVENTS = "/events"
READ_CHUNK = 1 << 16
MAX_HEADER_BYTES = 16 * 1024
MAX_ERROR_BODY = 4096
USER_AGENT = "docker-inventory-exporter"
INSPECT_QUEUE = 64  # Podman dies waiting for their inspect; more are skipped (and counted)
MAX_INSPECT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class StreamSettings:
    connect_timeout: float = 5.0  # connect, TLS and the answer's headers
    idle_resubscribe: float = 300.0  # a stream quiet this long is opened again
    first_pause: float = 0.5  # before the first reconnect; doubles up to longest_pause
    longest_pause: float = 30.0
    max_line: int = 256 * 1024  # one event; every container label is in its attributes
    settle: float = 0.25  # after an event, before collecting: a burst is one collection
    debounce: float = 1.0  # at most one collection asked per window
    # ... and the window is at least this many times the last collection's duration, so
    # that collections asked by events take at most a quarter of a core on a big host
    duty_factor: float = 4.0
    keepalive_idle: int = 30  # TCP keepalive: idle seconds, interval, probes
    keepalive_interval: int = 10
    keepalive_probes: int = 3


class StreamError(Exception):
    """A failed subscription or a broken stream; str() is one stable line (its cause)."""


class EventLoop:
    """One asyncio loop in one daemon thread, started on first use, for every stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="event-streams", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop


_shared = EventLoop()


def shared_loop() -> EventLoop:
    return _shared


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The engine client's TLS: the engine's CA (never the environment's), the client pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.verify:
        if tls.ca:
            context.load_verify_locations(cafile=tls.ca)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


def _engine_time(value: bytes) -> int | None:
    """An HTTP Date header as nanoseconds (the engine's clock, to the second)."""
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp()) * 1_000_000_000
    except (TypeError, ValueError, IndexError):
        return None


class _Lines:
    """Splits the stream into lines of at most ``limit`` bytes; a longer one is skipped."""

    def __init__(self, limit: int, on_line: Callable[[bytes], None], on_long: Callable[[], None]):
        self.limit = limit
        self.on_line = on_line
        self.on_long = on_long
        self.buffer = bytearray()
        self.skipping = False

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self.skipping:
                self.skipping = False
            elif self.buffer:
                if len(self.buffer) + end - start > self.limit:
                    self.on_long()
                else:
                    self.buffer += data[start:end]
                    self.on_line(bytes(self.buffer))
                self.buffer.clear()
            elif end - start > self.limit:
                self.on_long()
            elif end > start:
                self.on_line(data[start:end])
            start = end + 1
        rest = len(data) - start
        if not rest or self.skipping:
            return
        if len(self.buffer) + rest > self.limit:
            self.on_long()
            self.buffer.clear()
            self.skipping = True
        else:
            self.buffer += data[start:]


class EventStream:
    """One target's event stream. Start and stop from any thread; the rest runs on the loop.

    ``publish`` gets the counts (on the loop's thread), at most once per debounce window;
    ``collect`` asks for an inventory collection and answers False when one is running
    (the stream then asks again after the window); ``never_started`` reads the newest
    inventory (restart rule, events.py).
    """

    def __init__(
        self,
        engine: EngineConfig,
        publish: Callable[[EventsSnapshot], None],
        collect: Callable[[], bool],
        never_started: NeverStarted | None = None,
        log_prefix: str = "",
        collection_cost: Callable[[], float | None] | None = None,
        settings: StreamSettings = StreamSettings(),
        max_probe_bytes: int = 16 * 1024 * 1024,
        changes: InventoryChanges | None = None,
    ) -> None:
        self.engine = engine
        self.changes = changes if changes is not None else InventoryChanges()
        self.publish = publish
        self.collect = collect
        self.never_started = never_started
        self.collection_cost = collection_cost  # the last inventory run's duration
        self.what = f"{log_prefix}event stream"
        self.settings = settings
        self.max_probe_bytes = max_probe_bytes
        self.counter = EventCounter()
        self.subscribed = threading.Event()  # the first subscription succeeded or failed
        self.subscriptions = 0  # successful subscriptions, idle re-subscriptions included
        self.collections_asked = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ssl = ssl_context(engine.tls) if engine.tls is not None else None
        self._subscribed_at = 0  # engine time of the first subscription, ns
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = -1e9
        self._counts_dirty = False
        self._inventory_dirty = False
        self._logged: set[str] = set()  # junk causes logged on this stream
        self._failing: str | None = None  # the current failure's cause, logged once
        self._was_open = False  # the current session subscribed
        self._stopped = False
        self._libpod = False  # the engine is Podman: it sends no oom event
        self._dies: deque[str] = deque()  # Podman dies waiting for their inspect
        self._inspector: asyncio.Task[None] | None = None

    # --- from any thread ---------------------------------------------------------------

    def start(self, loop: EventLoop | None = None) -> None:
        if self._loop is None and not self._stopped:
            self._loop = (loop or shared_loop()).loop()
            self._loop.call_soon_threadsafe(self._start)

    def subscribe(self, timeout: float | None = None) -> None:
        """Start (once) and wait for the first subscription: what the inventory job calls
        before each list."""
        self.start()
        self.wait_subscribed(timeout)

    def stop(self) -> None:
        self._stopped = True
        self.subscribed.set()  # a list waiting for it goes on
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop)

    def wait_subscribed(self, timeout: float | None = None) -> None:
        """Block until the first subscription is made or has failed, at most ``timeout``
        (default: the subscription's own timeout and a second)."""
        self.subscribed.wait(self.settings.connect_timeout + 1.0 if timeout is None else timeout)

    # --- on the loop -------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._inspector is not None:
            self._inspector.cancel()
            self._inspector = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    async def _run(self) -> None:
        pause = self.settings.first_pause
        broken = False  # the last session failed or ended: the next success is a reconnect
        while True:
            self._was_open = False
            try:
                await self._session(reconnect=broken)
                broken = False  # quiet for idle_resubscribe: open again at once
                pause = self.settings.first_pause
                continue
            except StreamError as exc:
                cause = str(exc)
            except (OSError, asyncio.TimeoutError, h11.ProtocolError, ssl.SSLError) as exc:
                cause = _describe(exc, self.settings.connect_timeout)
            except Exception as exc:  # a bug must not end the stream for good: log it once
                cause = f"internal error: {type(exc).__name__}"
                if cause != self._failing:
                    log.exception("%s: %s: %s", self.what, cause, quoted(str(exc)))
                    self._failing = cause
            self.subscribed.set()
            if self._was_open:  # it worked for a while: the pauses start again
                pause = self.settings.first_pause
            broken = True
            if self.counter.up:
                self.counter.up = False
                self._counts_changed()
            if cause != self._failing:
                log.warning("%s: %s; reconnecting", self.what, cause)
                self._failing = cause
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.settings.longest_pause)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        parts = urlsplit(self.engine.host)
        if parts.scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(
                parts.netloc + parts.path, limit=READ_CHUNK
            )
            return reader, writer, "docker"
        host = parts.hostname or ""
        port = parts.port or (2376 if self._ssl else 2375)
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=self._ssl,
            server_hostname=host if self._ssl else None,
            limit=READ_CHUNK,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            s = self.settings
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, s.keepalive_idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, s.keepalive_interval)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, s.keepalive_probes)
        return reader, writer, parts.netloc

    async def _request(
        self, params: dict[str, str], path: str = EVENTS
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection, h11.Response]:
        """Open a connection and send GET /events (or ``path``); the answer's head, once it
        is a 200."""
        timeout = self.settings.connect_timeout
        reader, writer, host = await asyncio.wait_for(self._open(), timeout)
        try:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
            target = f"{path}?{urlencode(params)}" if params else path
            request = h11.Request(
                method="GET",
                target=target,
                headers=[("Host", host), ("User-Agent", USER_AGENT), ("Accept", "*/*")],
            )
            writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
            deadline = time.monotonic() + timeout
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StreamError(f"GET {EVENTS}: no answer within {timeout:g}s")
                    try:
                        data = await asyncio.wait_for(reader.read(READ_CHUNK), left)
                    except asyncio.TimeoutError:
                        raise StreamError(f"GET {EVENTS}: no answer within {timeout:g}s") from None
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    raise StreamError(f"GET {EVENTS}: the engine closed the connection")
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    if event.status_code != 200:
                        raise StreamError(await self._refusal(event, conn, reader))
                    return reader, writer, conn, event
        except BaseException:
            writer.close()
            raise

    async def _refusal(
        self, response: h11.Response, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> str:
        status = response.status_code
        if 300 <= status < 400:
            return (
                f"GET {EVENTS}: the engine answered a redirect (HTTP {status}), which the"
                " Engine API never does; not followed"
            )
        body = b""
        with contextlib.suppress(asyncio.TimeoutError, OSError, h11.ProtocolError):
            while len(body) < MAX_ERROR_BODY:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), 1.0)
                    conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                else:
                    break
        message = ""
        with contextlib.suppress(ValueError):
            data = json.loads(body[:MAX_ERROR_BODY])
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                message = data["message"]
        detail = f" {quoted(message)}" if message else ""
        return f"GET {EVENTS}: engine answered HTTP {status}{detail}"

    async def _session(self, reconnect: bool) -> None:
        """One subscription, read until it is quiet for idle_resubscribe (returns) or breaks
        (raises)."""
        params = {"filters": json.dumps({k: list(v) for k, v in FILTERS.items()})}
        # From the newest event counted, exactly (the replay's repeats are dropped). The
        # subscription's Date only stands in before any event: it is whole seconds, and an
        # event stamped before it (Podman stamps out of order) may still follow it.
        since = self.counter.resume_from() or self._subscribed_at
        if since:
            params["since"] = since_param(since)
        reader, writer, conn, response = await self._request(params)
        try:
            now = None
            for name, value in response.headers:
                if name == b"date":
                    now = _engine_time(value)
            self._libpod = any(name == b"libpod-api-version" for name, _ in response.headers)
            if not self._subscribed_at:
                self._subscribed_at = now or 0
            self.subscriptions += 1
            self._was_open = True
            self.subscribed.set()
            if self._failing is not None:
                log.info("%s: subscribed again", self.what)
                self._failing = None
            if reconnect:
                self.counter.reconnects += 1
                self._inventory_dirty = True  # what changed while it was down
                self.changes.everything()
                if since:
                    await self._probe_gap(since, now)
            self.counter.up = True
            self._counts_changed()
            lines = _Lines(self.settings.max_line, self._line, self._long_line)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await asyncio.wait_for(
                            reader.read(READ_CHUNK), self.settings.idle_resubscribe
                        )
                    except asyncio.TimeoutError:
                        return  # quiet: open again, which tells quiet from dead
                    conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    lines.feed(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    raise StreamError(f"GET {EVENTS}: the engine ended the stream")
        except h11.RemoteProtocolError:
            raise StreamError(f"GET {EVENTS}: the stream was cut") from None
        except ConnectionError:
            raise StreamError(f"GET {EVENTS}: the engine reset the connection") from None
        finally:
            writer.close()

    async def _body(
        self,
        reader: asyncio.StreamReader,
        conn: h11.Connection,
        take: Callable[[bytes], bool],
    ) -> bool:
        """Reads an answer's body a piece at a time, each given to ``take`` while it returns
        True; True when the body ended, False when ``take`` stopped or the answer broke off."""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(
                    reader.read(READ_CHUNK), self.settings.connect_timeout
                )
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                if not take(bytes(event.data)):
                    return False
            else:
                return isinstance(event, h11.EndOfMessage)

    async def _probe_gap(self, since: int, now: int | None) -> None:
        """Count what the engine holds since ``since``, unfiltered, up to ``now``: a full
        buffer (256) means events may have been dropped before this reconnect."""
        if now is None:
            return
        until = now + 1_000_000_000
        params = {"since": since_param(since), "until": since_param(until)}
        count = 0
        size = 0

        def take(data: bytes) -> bool:
            nonlocal count, size
            size += len(data)
            count += data.count(b"\n")
            return count < ENGINE_REPLAY_LIMIT and size < self.max_probe_bytes

        try:
            reader, writer, conn, _ = await self._request(params)
        except (StreamError, OSError, asyncio.TimeoutError, h11.ProtocolError, ssl.SSLError):
            return  # the stream itself is open; the probe is best effort
        try:
            await self._body(reader, conn, take)
        except (OSError, asyncio.TimeoutError, h11.ProtocolError):
            pass
        finally:
            writer.close()
        if count >= ENGINE_REPLAY_LIMIT:
            self.counter.replay_gaps += 1
            log.warning(
                "%s: the engine's replay since the last event is full (%d events): some events"
                " of the outage may be lost",
                self.what,
                ENGINE_REPLAY_LIMIT,
            )

    def _line(self, line: bytes) -> None:
        try:
            event = parse_event(line)
        except EventDataError as exc:
            self._junk(str(exc))
            return
        if not self.counter.add(event, self.never_started):
            return
        if event.action in CHANGES_INVENTORY:
            self._inventory_dirty = True
            self.changes.add(event)
        if self._libpod and event.action == "die" and event.exit_code in (OOM_EXIT_CODE, None):
            self._inspect_die(event)
        self._counts_changed()

    def _inspect_die(self, event: EventRecord) -> None:
        """Queue one inspect of a Podman container that died by SIGKILL (bounded)."""
        if event.type != "container" or not event.actor_id:
            return
        if len(self._dies) >= INSPECT_QUEUE:
            self.counter.die_inspects["skipped"] += 1
            return
        self._dies.append(event.actor_id)
        if self._inspector is None or self._inspector.done():
            self._inspector = asyncio.get_running_loop().create_task(self._inspect_dies())

    async def _inspect_dies(self) -> None:
        while self._dies:
            actor_id = self._dies.popleft()
            self.counter.inspected(actor_id, await self._oom_killed(actor_id))
            self._counts_changed()

    async def _oom_killed(self, actor_id: str) -> bool | None:
        """State.OOMKilled of the container, None when there is no such answer."""
        path = f"/containers/{quote(actor_id, safe='')}/json"
        try:
            reader, writer, conn, _ = await self._request({}, path)
        except (StreamError, OSError, asyncio.TimeoutError, h11.ProtocolError, ssl.SSLError):
            return None
        body = bytearray()

        def take(data: bytes) -> bool:
            body.extend(data)
            return len(body) <= MAX_INSPECT_BYTES

        try:
            if not await self._body(reader, conn, take):
                return None  # too long, or not a whole answer
        except (OSError, asyncio.TimeoutError, h11.ProtocolError):
            return None
        finally:
            writer.close()
        try:
            data = json.loads(bytes(body))
        except ValueError:
            return None
        state = data.get("State") if isinstance(data, dict) else None
        oom = state.get("OOMKilled") if isinstance(state, dict) else None
        return oom if isinstance(oom, bool) else None

    def _long_line(self) -> None:
        self._junk(f"an event line is longer than {self.settings.max_line} bytes; skipped")

    def _junk(self, cause: str) -> None:
        if cause not in self._logged:
            self._logged.add(cause)
            log.warning("%s: %s (logged once)", self.what, cause)

    def _counts_changed(self) -> None:
        self._counts_dirty = True
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            delay = max(self.settings.settle, self._last_flush + self._window() - now)
            self._flush_handle = loop.call_later(delay, self._flush)

    def _window(self) -> float:
        cost = self.collection_cost() if self.collection_cost is not None else None
        return max(self.settings.debounce, self.settings.duty_factor * (cost or 0.0))

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        # the collection first: the target then leaves the counts to its rendering
        if self._inventory_dirty:
            if self.collect():
                self._inventory_dirty = False
                self.collections_asked += 1
            else:  # a collection is running: ask again after the window
                self._counts_changed()
        if self._counts_dirty:
            self._counts_dirty = False
            self.publish(self.counter.snapshot())

    def forget_gone(self, listed: frozenset[str], listed_at: float) -> None:
        """Called with each new inventory (any thread): drop what the list no longer has."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self.counter.forget_gone, listed, int(listed_at * 1e9) - 5_000_000_000
            )


def _describe(exc: BaseException, timeout: float) -> str:
    where = f"GET {EVENTS}"
    if isinstance(exc, asyncio.TimeoutError):
        return f"{where}: no answer within {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{where}: TLS verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, h11.ProtocolError):
        return f"{where}: the engine's answer is not HTTP"
    if isinstance(exc, ConnectionResetError):
        return f"{where}: the engine reset the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{where}: cannot connect: {exc.strerror}"
    return f"{where}: {type(exc).__name__}"
