"""Scrapes first: collections step aside while the server answers a request (exporter/priority.py),
and a scrape of bytes already built is answered on the server's loop, without a worker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from exporter import priority
from exporter.server import HTTPServer, Limits
from tests.support.attack import non_readers
from tests.support.wait import wait_until


class RecordedQuiet(threading.Event):
    """The priority module's event, recording each wait a checkpoint makes on it."""

    def __init__(self) -> None:
        super().__init__()
        self.set()
        self.waits = 0
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.waiting.set()
        return super().wait(timeout)


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordedQuiet]:
    event = RecordedQuiet()
    monkeypatch.setattr(priority, "_quiet", event)
    monkeypatch.setattr(priority, "_answering", 0)
    monkeypatch.setattr(priority, "_run_until", 0.0)
    monkeypatch.setattr(priority, "_runs", threading.local())
    yield event


def test_without_answers_a_collection_never_waits(quiet: RecordedQuiet):
    items = list(range(1000))
    assert list(priority.paced(items)) == items
    priority.checkpoint()
    assert (quiet.waits, priority.answers()) == (0, 0)


def test_a_collection_waits_until_the_answer_ends(
    quiet: RecordedQuiet, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(priority, "WAIT", 60.0)  # it cannot give up within the test
    seen: list[int] = []

    def collection() -> None:
        priority.run_starts()
        for _ in priority.paced(range(3)):
            seen.append(priority.answers())

    thread = threading.Thread(target=collection)
    with priority.answering():
        assert priority.answers() == 1 and not quiet.is_set()
        thread.start()
        wait_until(quiet.waiting.is_set, 10, what="the collection waiting at its checkpoint")
        assert seen == []  # the first item only after the answer
    thread.join(30)
    assert not thread.is_alive(), "the checkpoint did not return after the answer ended"
    assert (seen, quiet.waits, priority.answers()) == ([0, 0, 0], 1, 0)


def test_answers_without_a_pause_slow_a_collection_but_never_stop_it(
    quiet: RecordedQuiet, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(priority, "WAIT", 0.01)
    monkeypatch.setattr(priority, "RUN", 3600.0)
    priority.run_starts()
    with priority.answering():
        priority.checkpoint()  # waits WAIT, the answer goes on: a slice of RUN anyway
        assert quiet.waits == 1
        assert list(priority.paced(range(100))) == list(range(100))
        assert quiet.waits == 1  # within its slice: no wait
        monkeypatch.setattr(priority, "_run_until", 0.0)  # the slice over
        priority.checkpoint()
        assert quiet.waits == 2


def test_only_a_run_of_a_job_waits(quiet: RecordedQuiet, monkeypatch: pytest.MonkeyPatch):
    # a worker building a variant for the request being answered must not wait for itself
    monkeypatch.setattr(priority, "WAIT", 60.0)
    with priority.answering():
        assert list(priority.paced(range(100))) == list(range(100))
        priority.checkpoint()
        assert quiet.waits == 0


def test_a_run_waits_a_bounded_time_in_all(quiet: RecordedQuiet, monkeypatch: pytest.MonkeyPatch):
    # scrapers that never pause cannot hold a collection past its engine deadline
    monkeypatch.setattr(priority, "WAIT", 0.01)
    monkeypatch.setattr(priority, "RUN", 0.0)
    monkeypatch.setattr(priority, "MAX_WAITED", 0.05)
    with priority.answering():
        priority.run_starts()
        while quiet.waits < 1000 and priority._runs.waited < 0.05:
            priority.checkpoint()
        waits = quiet.waits
        assert 1 <= waits < 1000
        assert list(priority.paced(range(100))) == list(range(100))
        assert quiet.waits == waits  # its budget spent: no more waiting in this run
        priority.run_starts()  # the next run
        priority.checkpoint()
        assert quiet.waits == waits + 1


def test_waiting_for_the_client_to_read_is_not_answering(quiet: RecordedQuiet):
    with priority.answering(), priority.answering():
        assert priority.answers() == 2
        with priority.waiting():
            assert priority.answers() == 1 and not quiet.is_set()
            with priority.waiting():
                assert priority.answers() == 0 and quiet.is_set()
                priority.run_starts()
                priority.checkpoint()
                assert quiet.waits == 0
        assert priority.answers() == 2 and not quiet.is_set()
    assert priority.answers() == 0 and quiet.is_set()


def serve(app: Callable[..., list[bytes]], **kwargs: Any) -> HTTPServer:
    server = HTTPServer(app, "127.0.0.1", 0, **kwargs)
    server.start()
    return server


def test_the_server_counts_an_answer_until_the_client_has_to_read_it(quiet: RecordedQuiet):
    release = threading.Event()
    big = b"x" * (64 << 20)  # more than the kernel's buffers hold for a client that reads nothing

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [big if environ["PATH_INFO"] == "/big" else b"ok\n"]

    server = serve(app)
    url = f"http://127.0.0.1:{server.port}"
    try:
        slow = threading.Thread(target=lambda: requests.get(f"{url}/slow", timeout=30))
        slow.start()
        wait_until(lambda: server.in_flight == 1, 10, what="the slow request in a worker")
        assert priority.answers() == 1  # the app's work is the answer's
        release.set()
        slow.join(30)
        wait_until(lambda: priority.answers() == 0, 10, what="the answer's end counted")

        with non_readers(server.port, 1, "/big") as socks:
            assert len(socks) == 1

            def writing() -> bool:
                sizes = [c.writer.transport.get_write_buffer_size() for c in server.connections]
                return bool(sizes) and max(sizes) > 0

            wait_until(writing, 10, what="the big answer waiting for its client to read")
            assert priority.answers() == 0 and quiet.is_set()
    finally:
        release.set()
        server.shutdown()


def test_an_answer_at_once_needs_no_worker():
    # every worker and the --web.max-requests budget held: a request the app answers with
    # bytes it holds is still answered, on the loop (without at_once: 503, test_web_security)
    release = threading.Event()
    threads: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        threads.append(threading.current_thread().name)
        if environ["PATH_INFO"] == "/slow":
            release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    server = serve(
        app,
        limits=Limits(max_requests=1, workers=1),
        at_once=lambda environ: environ["PATH_INFO"] == "/fast",
    )
    url = f"http://127.0.0.1:{server.port}"
    try:
        slow = threading.Thread(target=lambda: requests.get(f"{url}/slow", timeout=30))
        slow.start()
        wait_until(lambda: server.in_flight == 1, 10, what="the slow request in the one worker")
        fast = [requests.get(f"{url}/fast", timeout=10) for _ in range(3)]
        assert [(r.status_code, r.content) for r in fast] == [(200, b"ok\n")] * 3
        assert requests.get(f"{url}/other", timeout=10).status_code == 503
        assert threads[0].startswith("http_") and threads[1:] == ["http-loop"] * 3
    finally:
        release.set()
        server.shutdown()
