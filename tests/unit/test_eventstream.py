"""The event stream against a stand-in /events that misbehaves on cue: cut, garbage,
endless lines, a silent peer, a storm, a redirect. Counts are asserted, never times."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from exporter.config import EngineConfig
from exporter.events import EventsSnapshot, since_param
from exporter.eventstream import EventStream, StreamSettings
from tests.support.fake_engine import EventFeed, FakeEngine, Raw, evented_engine
from tests.support.wait import wait_until

C = "c0ffee" + "0" * 58
# Short pauses and windows; the connect timeout stays the default, so that a loaded machine
# (the probe's answer taking over a second) does not pass for a dead engine.
FAST = StreamSettings(
    connect_timeout=5.0, idle_resubscribe=30.0, first_pause=0.05, longest_pause=0.2,
    max_line=4096, settle=0.05, debounce=0.3,
)  # fmt: skip


class Watched:
    """A stream with recording callbacks: the snapshots published and collections asked."""

    def __init__(self, engine: FakeEngine, settings: StreamSettings = FAST) -> None:
        self.published: list[EventsSnapshot] = []
        self.collections = 0
        self.lock = threading.Lock()
        self.stream = EventStream(
            EngineConfig(engine.url), self._publish, self._collect, settings=settings
        )

    def _publish(self, snapshot: EventsSnapshot) -> None:
        with self.lock:
            self.published.append(snapshot)

    def _collect(self) -> bool:
        with self.lock:
            self.collections += 1
        return True

    @property
    def last(self) -> EventsSnapshot:
        with self.lock:
            return self.published[-1] if self.published else EventsSnapshot()

    def wait(self, check, what: str, timeout: float = 20.0) -> EventsSnapshot:
        seen: list[EventsSnapshot] = []

        def ready() -> EventsSnapshot | None:
            last = self.last
            seen[:] = [last]
            return last if check(last) else None

        found = wait_until(
            ready,
            timeout,
            what=what,
            ignore=(),
            diagnostics=lambda: f"the last counts published: {seen[0] if seen else None}",
        )
        assert found is not None
        return found


@pytest.fixture
def feed() -> Iterator[tuple[FakeEngine, EventFeed]]:
    engine, events = evented_engine()
    yield engine, events
    events.close()
    engine.close()


@pytest.fixture
def watched(feed) -> Iterator[Watched]:
    w = Watched(feed[0])
    w.stream.subscribe()
    yield w
    w.stream.stop()


def restart_loop(events: EventFeed, cid: str, restarts: int) -> list[dict[str, object]]:
    out = [events.event("create", cid, name="loop"), events.event("start", cid, name="loop")]
    for _ in range(restarts):
        out += [events.event("die", cid, name="loop", exitCode=2), events.event("start", cid)]
    out.append(events.event("die", cid, name="loop", exitCode=2))
    return out


def restarts(snap: EventsSnapshot, cid: str = C) -> int:
    c = snap.containers.get(cid[:12])
    return -1 if c is None else c.restarts


def test_subscribes_filtered_and_counts(feed, watched):
    _, events = feed
    assert events.subscriptions[0].startswith("filters=")
    assert "since" not in events.subscriptions[0]  # the first subscription goes live
    events.emit(*restart_loop(events, C, 3))
    events.emit(events.event("exec_start: /bin/sh -c true", C))  # a healthcheck: not sent
    snap = watched.wait(lambda s: restarts(s) == 3 and s.up, "three restarts")
    assert snap.containers[C[:12]].last_exit_code == 2
    assert sum(snap.by_action.values()) == 9
    assert not any(action.startswith("exec") for _, action in snap.by_action)


def test_a_cut_mid_loop_resumes_with_since_and_never_counts_twice(feed, watched):
    _, events = feed
    loop = restart_loop(events, C, 5)
    events.emit(*loop[:6])  # create, start, die, start, die, start: 2 restarts
    watched.wait(lambda s: restarts(s) == 2, "two restarts")
    events.cut()
    events.emit(*loop[6:])  # while it reconnects: held by the engine, replayed
    snap = watched.wait(lambda s: restarts(s) == 5 and s.up, "five restarts after the cut")
    assert snap.reconnects == 1
    assert "since=" in events.subscriptions[1]
    assert snap.by_action[("container", "start")] == 6
    # the replay from since (inclusive) repeated the last event counted: dropped
    assert watched.stream.counter.dropped_replays >= 1


def test_a_resume_starts_at_the_last_event_even_if_stamped_before_subscribing(feed, watched):
    # The subscription's Date is whole seconds; events may carry times before it (Podman
    # stamps out of order; so did this stand-in's clock when its feed began just before a
    # second boundary, which once failed the test above). The resume is from the event.
    _, events = feed
    assert watched.stream.subscribed.wait(10), "the first subscription never answered"
    events.nano -= 5_000_000_000  # 5 s before the Date of the subscription
    loop = restart_loop(events, C, 3)
    events.emit(*loop[:4])  # create, start, die, start: 1 restart
    watched.wait(lambda s: restarts(s) == 1, "one restart")
    events.cut()
    events.emit(*loop[4:])
    snap = watched.wait(lambda s: restarts(s) == 3 and s.up, "three restarts after the cut")
    assert snap.reconnects == 1
    since = events.subscriptions[1].rsplit("since=", 1)[1].split("&", 1)[0]
    assert since == since_param(loop[3]["timeNano"])  # type: ignore[arg-type]


def test_garbage_and_endless_lines_are_skipped_and_logged_once(feed, watched, caplog):
    _, events = feed
    caplog.set_level(logging.WARNING, "exporter.eventstream")
    for _ in range(3):
        events.send_raw(b"not json\n")
        events.send_raw(b"x" * 10_000)  # longer than max_line (4096)...
        events.send_raw(b"x" * 10_000 + b"\n")  # ...and it ends here
    events.emit(events.event("oom", C, name="loop"))
    snap = watched.wait(lambda s: s.containers.get(C[:12]) is not None, "the oom after junk")
    assert snap.containers[C[:12]].oom_kills == 1
    assert snap.up and snap.reconnects == 0
    assert [r.getMessage() for r in caplog.records] == [
        "event stream: an event line is not valid JSON (logged once)",
        "event stream: an event line is longer than 4096 bytes; skipped (logged once)",
    ]


def test_a_silent_peer_is_told_from_a_quiet_stream(feed, caplog):
    engine, events = feed
    caplog.set_level(logging.WARNING, "exporter.eventstream")
    quiet = Watched(
        engine, StreamSettings(**{**FAST.__dict__, "idle_resubscribe": 0.3, "connect_timeout": 1.0})
    )
    quiet.stream.subscribe()
    try:
        # quiet: every idle window it subscribes again, and stays up
        wait_until(lambda: quiet.stream.subscriptions >= 3, 20, what="re-subscriptions")
        assert quiet.last.up and quiet.last.reconnects == 0
        # silent: open streams send nothing and new subscriptions get no answer
        events.stall = True
        snap = quiet.wait(lambda s: not s.up, "the stream reported down")
        assert snap.reconnects == 0
        assert "event stream: GET /events: no answer within 1s; reconnecting" in [
            r.getMessage() for r in caplog.records
        ]
        with events.cond:
            events.stall = False
            events.cond.notify_all()
        snap = quiet.wait(lambda s: s.up, "up again")
        assert snap.reconnects == 1
    finally:
        quiet.stream.stop()


def test_a_storm_costs_one_collection_per_debounce_window(feed, watched):
    _, events = feed
    n = 3000
    for _ in range(n // 100):
        events.emit(*[events.event("start", C, name="loop") for _i in range(100)])
    snap = watched.wait(lambda s: s.by_action.get(("container", "start")) == n, "the storm")
    assert restarts(snap) == n  # never seen created: every start is a restart
    wait_until(lambda: watched.stream._flush_handle is None, 5, what="the last flush")
    # every collection asked was at least a debounce window after the previous one, so
    # however long the storm took, the count is bounded by publications, not events
    assert 1 <= watched.collections <= len(watched.published) < n / 10


def redirect(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(301)
    handler.send_header("Location", "http://198.51.100.1/events")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def test_a_redirect_is_refused_and_not_followed(caplog):
    engine = FakeEngine({"/events": Raw(redirect)})
    caplog.set_level(logging.WARNING, "exporter.eventstream")
    w = Watched(engine)
    try:
        w.stream.subscribe()
        wait_until(lambda: engine.count("/events") >= 3, 20, what="retries")
        assert [r.getMessage() for r in caplog.records] == [
            "event stream: GET /events: the engine answered a redirect (HTTP 301), which the"
            " Engine API never does; not followed; reconnecting"
        ]
        assert not w.last.up
    finally:
        w.stream.stop()
        engine.close()


def test_an_engine_without_events_is_one_line(caplog):
    engine = FakeEngine({})
    caplog.set_level(logging.WARNING, "exporter.eventstream")
    w = Watched(engine)
    try:
        w.stream.subscribe()
        wait_until(lambda: engine.count("/events") >= 3, 20, what="retries")
        assert [r.getMessage() for r in caplog.records] == [
            'event stream: GET /events: engine answered HTTP 404 "page not found"; reconnecting'
        ]
    finally:
        w.stream.stop()
        engine.close()


def test_a_full_replay_is_reported_as_a_gap(feed, watched):
    _, events = feed
    events.emit(events.event("start", C, name="loop"))
    watched.wait(lambda s: restarts(s) == 1, "one restart")
    events.cut()
    # more than the engine holds happen during the outage (most not asked for)
    events.emit(*[events.event("exec_die", C) for _ in range(300)])
    snap = watched.wait(lambda s: s.replay_gaps == 1 and s.up, "the gap")
    assert snap.reconnects == 1


def test_many_streams_share_one_thread(feed):
    engine, events = feed

    def ours() -> set[threading.Thread]:
        # the stand-in serves each connection on a thread of its own: not the client's (named
        # for its target from CPython 3.10 on, plain "Thread-N" before)
        def stand_in(t: threading.Thread) -> bool:
            target = getattr(t, "_target", None)
            return "process_request" in t.name or "process_request" in repr(target)

        return {t for t in threading.enumerate() if not stand_in(t)}

    before = ours()
    streams = [Watched(engine) for _ in range(50)]
    try:
        for w in streams:
            w.stream.start()
        wait_until(lambda: len(events.subscriptions) >= 50, 30, what="50 subscriptions")
        events.emit(events.event("oom", C, name="loop"))
        for w in streams:
            w.wait(lambda s: C[:12] in s.containers, "the oom on every stream")
        new = ours() - before
        assert {t.name for t in new} <= {"event-streams"}, new
    finally:
        for w in streams:
            w.stream.stop()


def test_the_window_grows_with_the_cost_of_a_collection(feed):
    engine, _ = feed
    costly = Watched(engine)
    costly.stream.collection_cost = lambda: 0.5  # four times that: 2 s windows
    costly.stream.subscribe()
    try:
        assert costly.stream._window() == 2.0
        costly.stream.collection_cost = lambda: None  # no run yet: the debounce
        assert costly.stream._window() == FAST.debounce
    finally:
        costly.stream.stop()


def test_a_bug_in_a_callback_never_ends_the_stream(feed, caplog):
    engine, events = feed
    caplog.set_level(logging.WARNING, "exporter.eventstream")
    w = Watched(engine)
    calls = []

    def broken(cid: str) -> bool:
        calls.append(cid)
        if len(calls) == 1:
            raise KeyError(cid)
        return False

    w.stream.never_started = broken
    w.stream.subscribe()
    try:
        events.emit(events.event("start", C, name="loop"))
        wait_until(lambda: calls, 20, what="the broken callback")
        events.emit(events.event("die", C, name="loop", exitCode=1))
        snap = w.wait(lambda s: s.up and C[:12] in s.containers, "counting again")
        assert snap.reconnects == 1
        assert snap.containers[C[:12]].last_exit_code == 1
        assert next(r.getMessage() for r in caplog.records).startswith(
            "event stream: internal error: KeyError: "
        )
    finally:
        w.stream.stop()


def test_podman_dies_by_sigkill_are_inspected_once_for_oom(feed):
    """Podman (Libpod-Api-Version on its answers) sends no oom event: a die with exit code
    137 is inspected once and OOMKilled counts; other dies are not inspected, a container
    gone before its inspect is counted as failed, never as 0 OOM kills."""
    engine, events = feed
    events.headers = [("Libpod-Api-Version", "5.8.6")]
    hog, crashed, killed, gone = (c * 64 for c in "abcd")
    engine.set(f"/containers/{hog}/json", {"State": {"OOMKilled": True, "ExitCode": 137}})
    engine.set(f"/containers/{killed}/json", {"State": {"OOMKilled": False, "ExitCode": 137}})
    engine.set(f"/containers/{crashed}/json", {"State": {"OOMKilled": True, "ExitCode": 2}})
    watched = Watched(engine)
    watched.stream.subscribe()
    try:
        for cid, code in ((hog, 137), (crashed, 2), (killed, 137), (gone, 137)):
            events.emit(events.event("create", cid), events.event("start", cid))
            events.emit(events.event("die", cid, exitCode=code))
        snap = watched.wait(lambda s: sum(s.die_inspects.values()) == 3, "three inspects")
        assert dict(snap.die_inspects) == {"oom": 1, "no_oom": 1, "failed": 1, "skipped": 0}
        oom = {cid[:1]: c.oom_kills for cid, c in snap.containers.items()}
        assert oom == {"a": 1, "b": 0, "c": 0, "d": 0}
        counts = [engine.count(f"/containers/{c}/json") for c in (hog, crashed, killed, gone)]
        assert counts == [1, 0, 1, 1]
        assert ("container", "oom") not in snap.by_action  # no event is made up
    finally:
        watched.stream.stop()


def test_docker_dies_are_never_inspected(feed, watched):
    engine, events = feed
    cid = "e" * 64
    events.emit(events.event("start", cid), events.event("die", cid, exitCode=137))
    snap = watched.wait(lambda s: s.by_action.get(("container", "die")) == 1, "the die")
    assert dict(snap.die_inspects) == {"oom": 0, "no_oom": 0, "failed": 0, "skipped": 0}
    assert engine.count(f"/containers/{cid}/json") == 0
