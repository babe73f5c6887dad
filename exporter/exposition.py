"""The exposition: rendered once per publish, incrementally, in the formats scrapers ask for.

A scrape only picks bytes: Prometheus text or OpenMetrics, plain or gzip. Rendering
happens when a job publishes, on the job's thread, so scrapes cost the engine and the
CPU nothing more.

- **Incremental.** Snapshot facts are immutable, so the lines of an image or container
  equal to one of the previous rendering are reused; only new or changed objects are
  formatted. A line is the same in both formats (only family headers differ), so the
  lines are rendered once for both.
- **Only the formats asked for.** Each rendering builds eagerly the variants (format,
  gzip) that were asked for during the previous one; Prometheus asks for OpenMetrics
  and gzip, so the classic text is built only when curl or an old server asks, on its
  first request per rendering.
- **Byte for byte the library's output.** Headers come from prometheus_client itself,
  and lines are formatted as it formats them; tests compare the two after random changes.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Hashable, Iterable, Iterator, Sequence
from functools import cache
from itertools import chain

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _go_float

from .collector import DockerCollector, Families, Head, ObjectFamilies, Part, Rows, family

# The classic text format every Prometheus since 2.0 reads (newer clients default to 1.0.0).
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # 2.3x faster than 6 on an 8 MB exposition, for 24% more bytes
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip stream (header and trailer), as HTTP's gzip wants
EOF_LINE = b"# EOF\n"

Variant = tuple[bool, bool]  # (openmetrics, gzipped)


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


@cache
def headers(head: Head) -> tuple[bytes, bytes]:
    """The family's HELP/TYPE lines in text and in OpenMetrics, as the library writes them."""
    empty = _One(family(head.spec, head.labels))
    om = generate_openmetrics(empty)  # type: ignore[no-untyped-call]
    return generate_latest(empty), om.removesuffix(EOF_LINE)


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def go_float(value: float) -> str:
    return _go_float(value)  # type: ignore[no-untyped-call,no-any-return]


class LineFormat:
    """Sample lines of one family: labels sorted by name, values as Go prints floats."""

    def __init__(self, head: Head) -> None:
        self.name = head.spec.name  # counters' specs already end in _total, like the sample
        self.order = sorted(range(len(head.labels)), key=lambda i: head.labels[i])
        self.keys = [f'{head.labels[i]}="' for i in self.order]

    def lines(self, rows: Rows) -> bytes:
        if not rows:
            return b""
        out = []
        for labels, value in rows:
            if self.keys:
                pairs = ",".join(
                    [k + _escape(labels[i]) + '"' for k, i in zip(self.keys, self.order)]
                )
                out.append(f"{self.name}{{{pairs}}} {go_float(value)}\n")
            else:
                out.append(f"{self.name} {go_float(value)}\n")
        return "".join(out).encode()


# A family: its header in each format (text, OpenMetrics) and its lines, which both share.
# A collector prometheus_client renders is one block: its whole output as the "header".
Block = tuple[tuple[bytes, bytes], Sequence[bytes]]


class Renderer:
    """Turns a collector's plan into blocks, reusing the lines of objects seen last time."""

    def __init__(self) -> None:
        self._formats: dict[Head, LineFormat] = {}
        # per kind of object: its heads and, per object, its lines in each family
        self._lines: dict[str, tuple[tuple[Head, ...], dict[Hashable, tuple[bytes, ...]]]] = {}
        self.formatted = 0  # objects formatted (not reused) by the last render, for tests

    def _format(self, head: Head) -> LineFormat:
        fmt = self._formats.get(head)
        if fmt is None:
            fmt = self._formats[head] = LineFormat(head)
        return fmt

    def render(self, plan: Sequence[Part]) -> list[Block]:
        blocks: list[Block] = []
        seen: set[str] = set()
        self.formatted = 0
        for part in plan:
            formats = [self._format(h) for h in part.heads]
            if isinstance(part, Families):
                for head, fmt, rows in zip(part.heads, formats, part.rows):
                    blocks.append((headers(head), (fmt.lines(rows),)))
                continue
            blocks.extend(zip(map(headers, part.heads), self._objects(part, formats)))
            seen.add(part.key)
        for key in set(self._lines) - seen:
            del self._lines[key]  # that kind of object is gone from the plan: drop its lines
        return blocks

    def _objects(self, part: ObjectFamilies, formats: list[LineFormat]) -> list[list[bytes]]:
        heads, old = self._lines.get(part.key, ((), {}))
        if heads != part.heads:
            old = {}
        new: dict[Hashable, tuple[bytes, ...]] = {}
        ordered = []
        rows_of = part.rows_of
        for obj in part.objects:
            lines = old.get(obj)
            if lines is None:
                lines = tuple([f.lines(r) for f, r in zip(formats, rows_of(obj))])
                self.formatted += 1
            new[obj] = lines
            ordered.append(lines)
        self._lines[part.key] = (part.heads, new)
        # one family after the other, each object's lines in object order
        return [[line for line in column if line] for column in zip(*ordered)] or [
            [] for _ in part.heads
        ]


class Rendered:
    """One rendering: its blocks, and the variants built from them so far."""

    def __init__(self, blocks: list[Block]) -> None:
        self._blocks_ = blocks
        self._bodies: dict[Variant, bytes] = {}
        self._lock = threading.Lock()
        self.asked: set[Variant] = set()

    def _blocks(self, openmetrics: bool) -> Iterator[bytes]:
        """The exposition, a family at a time."""
        i = 1 if openmetrics else 0
        for header, lines in self._blocks_:
            yield header[i] + b"".join(lines)
        if openmetrics:
            yield EOF_LINE

    def _join(self, openmetrics: bool) -> bytes:
        i = 1 if openmetrics else 0
        parts = chain.from_iterable(chain((header[i],), lines) for header, lines in self._blocks_)
        return b"".join(chain(parts, (EOF_LINE,) if openmetrics else ()))

    def _gzip(self, openmetrics: bool) -> bytes:
        # A family at a time, so the plain exposition is never held whole just to compress it.
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        out = [compressor.compress(block) for block in self._blocks(openmetrics)]
        out.append(compressor.flush())
        return b"".join(out)

    def body(self, openmetrics: bool, gzipped: bool) -> bytes:
        """The variant's bytes, built on first use and kept for this rendering."""
        self.asked.add((openmetrics, gzipped))
        return self.build(openmetrics, gzipped)

    def build(self, openmetrics: bool, gzipped: bool) -> bytes:
        variant = (openmetrics, gzipped)
        body = self._bodies.get(variant)
        if body is not None:
            return body
        with self._lock:
            body = self._bodies.get(variant)
            if body is None:
                body = self._gzip(openmetrics) if gzipped else self._join(openmetrics)
                self._bodies[variant] = body
            return body

    def pick(self, openmetrics: bool, gzipped: bool) -> tuple[bytes, str]:
        return self.body(openmetrics, gzipped), OPENMETRICS_TYPE if openmetrics else TEXT_TYPE

    @property
    def text(self) -> bytes:
        return self.body(False, False)

    @property
    def openmetrics(self) -> bytes:
        return self.body(True, False)


def library_block(collector: Collector) -> Block:
    """What prometheus_client renders of ``collector`` (process metrics: a few lines)."""
    om = generate_openmetrics(collector)  # type: ignore[no-untyped-call]
    return (generate_latest(collector), om.removesuffix(EOF_LINE)), ()


class Exposition:
    """Holds the newest rendering of ``collectors``; ``refresh`` is called after a publish.

    A DockerCollector is rendered incrementally; any other collector (process metrics, a
    fleet's own status: a few lines each) by prometheus_client, in its place.
    """

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self.collectors = tuple(collectors)
        self._renderers = [Renderer() for _ in self.collectors]
        self._lock = threading.Lock()
        self.renders = 0
        self._rendered = self._render()

    def _render(self) -> Rendered:
        blocks: list[Block] = []
        for collector, renderer in zip(self.collectors, self._renderers):
            if isinstance(collector, DockerCollector):
                blocks += renderer.render(collector.plan(collector.state.view()))
            else:
                blocks.append(library_block(collector))
        return Rendered(blocks)

    @property
    def formatted(self) -> int:
        """Objects formatted (not reused) by the last rendering, for tests."""
        return sum(r.formatted for r in self._renderers)

    @property
    def current(self) -> Rendered:
        return self._rendered

    def refresh(self) -> None:
        with self._lock:
            rendered = self._render()
            for openmetrics, gzipped in tuple(self._rendered.asked):
                rendered.build(openmetrics, gzipped)  # here, not on a scrape
            self._rendered = rendered
            self.renders += 1


def render(collectors: Sequence[Collector]) -> Rendered:
    """One full rendering (no lines reused)."""
    return Exposition(collectors).current
