"""The exposition: rendered once per publish, incrementally, in the formats scrapers ask for.

A scrape only picks bytes: Prometheus text or OpenMetrics, plain or gzip. Rendering
happens when a job publishes, on the job's thread, so scrapes cost the engine and the
CPU nothing more.

- **Incremental, in chunks.** Snapshot facts are immutable. The objects of a kind are
  cut into chunks (about 128 objects, boundaries set by each object's key), and each
  chunk keeps its lines per family in one piece. A rendering after an event's patch
  rebuilds only the chunks that hold a changed object (found by one C-speed pass), and a
  rebuilt chunk formats only its new or changed objects. A line is the same in both
  formats (only family headers differ), so the lines are rendered once for both.
- **Gzip spliced, not redone.** Each piece is compressed once, as a deflate segment that
  stands alone; a gzip body is the segments of its pieces between a header and a trailer
  (one CRC pass over the bytes). An unchanged piece is never compressed again.
- **Only the formats asked for.** Each rendering builds eagerly the variants (format,
  gzip) that were asked for during the previous one; Prometheus asks for OpenMetrics
  and gzip, so the classic text is built only when curl or an old server asks, on its
  first request per rendering.
- **Byte for byte the library's output.** Headers come from prometheus_client itself,
  and lines are formatted as it formats them; tests compare the two after random changes.
"""

from __future__ import annotations

import struct
import threading
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from functools import cache
from itertools import compress, count, islice, repeat
from operator import and_, ne, not_
from typing import NamedTuple

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _go_float

from .collector import DockerCollector, Families, Head, ObjectFamilies, Part, Rows, family
from .priority import paced

# The classic text format every Prometheus since 2.0 reads (newer clients default to 1.0.0).
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # 2.3x faster than 6 on an 8 MB exposition, for 24% more bytes
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


# A family: its header in each format (text, OpenMetrics) and its lines in pieces, which
# both formats share. A collector prometheus_client renders is one block: its whole output
# as the "header".
Block = tuple[tuple["Piece", "Piece"], Sequence["Piece"]]

# An object whose key hashes to 0 under this mask starts a chunk: 128 objects on average.
CHUNK_MASK = 127
# A family given outright keeps its rows, to reuse its piece when they come again, up to
# this many (a totals family has a handful; one with a row per container is formatted
# again rather than held twice)
ROWS_KEPT = 1000


class Piece:
    """Bytes of the exposition and, once a gzip variant needed them, the same bytes as a
    deflate segment that stands alone (byte-aligned, referring to nothing before it): a
    gzip body is its pieces' segments spliced, so a piece that did not change is never
    compressed again."""

    __slots__ = ("deflated", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.deflated: bytes | None = None


@cache
def header_pieces(head: Head) -> tuple[Piece, Piece]:
    text, om = headers(head)
    return Piece(text), Piece(om)


class Chunk:
    """A run of consecutive objects of one kind and their lines: per family, one piece, and
    the length of each object's lines in it."""

    __slots__ = ("lengths", "objects", "pieces")

    def __init__(
        self, objects: tuple[Hashable, ...], raws: list[bytes], lengths: list[array[int]]
    ) -> None:
        self.objects = objects
        self.pieces = tuple(map(Piece, raws))
        self.lengths = tuple(lengths)


class _ChunkBuilder:
    """Builds a chunk object by object: a run of objects found one after the other in an
    old chunk is copied as one slice per family, and only the others are formatted."""

    def __init__(self, families: int) -> None:
        self.parts: list[list[bytes]] = [[] for _ in range(families)]
        self.lengths: list[array[int]] = [array("I") for _ in range(families)]
        self.source: Chunk | None = None  # the pending run: source.objects[first:end]
        self.first = self.end = 0

    def reuse(self, chunk: Chunk, i: int) -> None:
        if chunk is self.source and i == self.end:
            self.end += 1
            return
        self.flush()
        self.source, self.first, self.end = chunk, i, i + 1

    def add(self, lines: Iterable[bytes]) -> None:
        self.flush()
        for part, sizes, line in zip(self.parts, self.lengths, lines):
            part.append(line)
            sizes.append(len(line))

    def flush(self) -> None:
        source = self.source
        if source is None:
            return
        first, end = self.first, self.end
        for part, sizes, piece, old in zip(self.parts, self.lengths, source.pieces, source.lengths):
            start = sum(old[:first])
            run = old[first:end]
            part.append(piece.raw[start : start + sum(run)])
            sizes.extend(run)
        self.source = None

    def chunk(self, objects: tuple[Hashable, ...]) -> Chunk:
        self.flush()
        return Chunk(objects, [b"".join(part) for part in self.parts], self.lengths)


def chunk_starts(keys: Sequence[Hashable], mask: int = CHUNK_MASK) -> list[int]:
    """Where chunks start: at the first object and at each object whose key hashes to 0
    under ``mask``. A boundary depends on its own object's key alone, so a change, an
    insertion or a removal leaves every other chunk as it was."""
    if not keys:
        return []
    hashes = map(and_, map(hash, keys), repeat(mask))
    return [0, *compress(range(1, len(keys)), map(not_, islice(hashes, 1, None)))]


class _Kind(NamedTuple):
    """What the last rendering of one kind of object left, for the next to compare with."""

    heads: tuple[Head, ...]
    objects: tuple[Hashable, ...]
    keys: list[Hashable]
    starts: list[int]
    chunks: list[Chunk]


def _lines_of(chunks: Iterable[Chunk]) -> dict[Hashable, tuple[Chunk, int]]:
    """Each object of ``chunks``, to where its lines are: for a chunk built again."""
    found: dict[Hashable, tuple[Chunk, int]] = {}
    for chunk in chunks:
        found.update(zip(chunk.objects, zip(repeat(chunk), count())))
    return found


class Renderer:
    """Turns a collector's plan into blocks, reusing what did not change since last time.

    The objects of a kind are cut into chunks (``chunk_starts``). When as many objects come
    as last time and those that differ (a C-speed pass) keep their keys, the chunks stay
    where they were and only those holding a changed object are built again: an event's
    patch costs the changed chunks, not a walk over every object. Otherwise a chunk whose
    objects equal the last rendering's chunk that started with the same key is reused
    whole. A chunk built again reuses the lines of each object equal to one of the old
    chunks it replaces: only new or changed objects are formatted. A family given outright
    reuses its piece when its rows are equal.
    """

    def __init__(self, chunk_mask: int = CHUNK_MASK) -> None:
        self.chunk_mask = chunk_mask
        self._formats: dict[Head, LineFormat] = {}
        self._kinds: dict[str, _Kind] = {}  # per kind of object (ObjectFamilies.key)
        self._rows: dict[Head, tuple[Rows, Piece]] = {}  # families given outright
        self.formatted = 0  # objects formatted (not reused) by the last render, for tests
        self.chunks_built = 0  # chunks built (not reused) by the last render, for tests

    def _format(self, head: Head) -> LineFormat:
        fmt = self._formats.get(head)
        if fmt is None:
            fmt = self._formats[head] = LineFormat(head)
        return fmt

    def render(self, plan: Sequence[Part]) -> list[Block]:
        blocks: list[Block] = []
        seen: set[str] = set()
        rows_seen: dict[Head, tuple[Rows, Piece]] = {}
        self.formatted = self.chunks_built = 0
        for part in paced(plan):
            formats = [self._format(h) for h in part.heads]
            if isinstance(part, Families):
                for head, fmt, rows in zip(part.heads, formats, part.rows):
                    kept = self._rows.get(head)
                    if kept is None or kept[0] != rows:
                        kept = (rows, Piece(fmt.lines(rows)))
                    if len(rows) <= ROWS_KEPT:
                        rows_seen[head] = kept
                    blocks.append((header_pieces(head), (kept[1],) if rows else ()))
                continue
            kind = self._objects(part, formats)
            self._kinds[part.key] = kind
            seen.add(part.key)
            # one family after the other, each chunk's piece in object order
            columns = [[c.pieces[f] for c in kind.chunks] for f in range(len(formats))]
            blocks.extend(
                (header_pieces(head), [p for p in column if p.raw])
                for head, column in zip(part.heads, columns)
            )
        self._rows = rows_seen
        for key in set(self._kinds) - seen:
            del self._kinds[key]  # that kind of object is gone from the plan: drop its lines
        return blocks

    def _objects(self, part: ObjectFamilies, formats: list[LineFormat]) -> _Kind:
        objects = tuple(part.objects)
        last = self._kinds.get(part.key)
        if last is None or last.heads != part.heads:
            return self._cut(part, objects, None, formats)
        if len(objects) == len(last.objects):
            changed = list(compress(count(), map(ne, objects, last.objects)))
            key_of, keys = part.key_of, last.keys
            if all(key_of(objects[i]) == keys[i] for i in changed):
                return self._in_place(part, objects, last, changed, formats)
        return self._cut(part, objects, last, formats)

    def _in_place(
        self,
        part: ObjectFamilies,
        objects: tuple[Hashable, ...],
        last: _Kind,
        changed: list[int],
        formats: list[LineFormat],
    ) -> _Kind:
        """The same keys in the same places: the chunks holding a changed object again."""
        starts, chunks = last.starts, list(last.chunks)
        ends = [*starts[1:], len(objects)]
        rebuild = {bisect_right(starts, i) - 1 for i in changed}
        for c, (first, end) in enumerate(paced(zip(starts, ends))):
            old = chunks[c]
            if c in rebuild:
                chunks[c] = self._build(objects[first:end], _lines_of([old]), formats, part.rows_of)
            else:
                # equal objects, maybe not the same ones (a full list decodes them anew):
                # hold the current ones, so that the old ones are freed
                old.objects = objects[first:end]
        return _Kind(part.heads, objects, last.keys, starts, chunks)

    def _cut(
        self,
        part: ObjectFamilies,
        objects: tuple[Hashable, ...],
        last: _Kind | None,
        formats: list[LineFormat],
    ) -> _Kind:
        """Chunks cut afresh, each reused when the last rendering had it."""
        old: dict[Hashable, Chunk] = {}
        if last is not None:
            old = {last.keys[s]: c for s, c in zip(last.starts, last.chunks)}
        keys = list(map(part.key_of, objects))
        starts = chunk_starts(keys, self.chunk_mask)
        chunks: list[Chunk | None] = []
        todo: list[tuple[int, tuple[Hashable, ...]]] = []  # (index in chunks, objects)
        kept: set[Hashable] = set()
        for start, end in zip(starts, [*starts[1:], len(objects)]):
            run = objects[start:end]
            chunk = old.get(keys[start])
            if chunk is not None and chunk.objects == run:
                kept.add(keys[start])
                chunk.objects = run  # the current objects, so that the old ones are freed
            else:
                todo.append((len(chunks), run))
                chunk = None
            chunks.append(chunk)
        if todo:
            # the objects of the chunks not reused, for the lines of those that did not change
            lines_of = _lines_of(chunk for key, chunk in old.items() if key not in kept)
            for i, run in todo:
                chunks[i] = self._build(run, lines_of, formats, part.rows_of)
        return _Kind(part.heads, objects, keys, starts, [c for c in chunks if c is not None])

    def _build(
        self,
        run: tuple[Hashable, ...],
        lines_of: dict[Hashable, tuple[Chunk, int]],
        formats: list[LineFormat],
        rows_of: Callable[[Hashable], tuple[Rows, ...]],
    ) -> Chunk:
        builder = _ChunkBuilder(len(formats))
        for obj in paced(run):
            found = lines_of.get(obj)
            if found is None:
                builder.add([f.lines(r) for f, r in zip(formats, rows_of(obj))])
                self.formatted += 1
            else:
                builder.reuse(*found)
        self.chunks_built += 1
        return builder.chunk(run)


GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 4, 255))  # deflate, no mtime, fastest
DEFLATE_END = b"\x03\x00"  # an empty final block
EOF_PIECE = Piece(EOF_LINE)


def _deflate(pieces: Iterable[Piece]) -> None:
    """Gives each piece that has none its deflate segment. A full flush ends each one on
    a byte boundary with the compressor's history cleared, so nothing refers back to an
    earlier piece (zlib's restart points, as pigz's independent blocks)."""
    compressor = None
    for piece in paced(pieces):
        if piece.deflated is None:
            if compressor is None:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            piece.deflated = compressor.compress(piece.raw) + compressor.flush(zlib.Z_FULL_FLUSH)


class Rendered:
    """One rendering: its blocks, and the variants built from them so far."""

    def __init__(self, blocks: list[Block]) -> None:
        self._blocks_ = blocks
        self._bodies: dict[Variant, bytes] = {}
        self._lock = threading.Lock()
        self.asked: set[Variant] = set()

    def pieces(self, openmetrics: bool) -> Iterator[Piece]:
        """The exposition, in order."""
        i = 1 if openmetrics else 0
        for header, lines in self._blocks_:
            yield header[i]
            yield from lines
        if openmetrics:
            yield EOF_PIECE

    def _join(self, openmetrics: bool) -> bytes:
        return b"".join([p.raw for p in self.pieces(openmetrics)])

    def _gzip(self, openmetrics: bool) -> bytes:
        """A gzip member of the pieces' deflate segments, each compressed once."""
        pieces = [p for p in self.pieces(openmetrics) if p.raw]
        _deflate(pieces)
        crc = 0
        for p in paced(pieces):
            crc = zlib.crc32(p.raw, crc)
        size = sum([len(p.raw) for p in pieces])
        trailer = DEFLATE_END + struct.pack("<II", crc, size & 0xFFFFFFFF)
        return b"".join([GZIP_HEADER, *[p.deflated for p in pieces], trailer])  # type: ignore[list-item]

    def body(self, openmetrics: bool, gzipped: bool) -> bytes:
        """The variant's bytes, built on first use and kept for this rendering."""
        self.asked.add((openmetrics, gzipped))
        return self.build(openmetrics, gzipped)

    def built(self, openmetrics: bool, gzipped: bool) -> bool:
        """Whether the variant's bytes are ready (``body`` would return them at once)."""
        return (openmetrics, gzipped) in self._bodies

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
    return (Piece(generate_latest(collector)), Piece(om.removesuffix(EOF_LINE))), ()


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
