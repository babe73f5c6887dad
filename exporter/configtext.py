"""Reading configuration text that someone else wrote: files, YAML, and echoed values.

Every file the exporter reads as configuration (``--config.file``, ``--web.config.file``,
the discovery stores' ``meta.json`` and ``config.json``) comes through ``read_text``: a
regular file under a size cap, opened without blocking, so a FIFO or a link to
``/dev/zero`` is refused instead of hanging or filling memory. YAML goes through
``parse_yaml``, which refuses what a configuration file never needs and an attacker
would use: aliases (a 400-byte file can expand to gigabytes), duplicate keys (PyYAML keeps
the last one silently), and nesting deeper than ``MAX_DEPTH``. Each problem is a
``TextProblem`` of one line; the callers add the file's name. ``cut`` shortens any value a
message echoes.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

import yaml

MAX_FILE_BYTES = 4 * 1024 * 1024  # a config file of 10,000 targets is under 2 MB
MAX_DISCOVERY_FILE_BYTES = 1024 * 1024  # a context's meta.json or a machine's config.json
MAX_DEPTH = 32  # the deepest real config nests 4 levels
ECHO_CHARS = 80


class TextProblem(ValueError):
    """A file or its text cannot be used; one line without the file's name."""


def cut(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (long ones end in ...)."""
    if isinstance(value, (str, bytes)) and len(value) > limit * 4:
        value = value[: limit * 4]  # repr of a huge string is never built
    text = repr(value) if not isinstance(value, (list, dict)) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` as it is, at most ``limit`` characters (long ones end in ...)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; TextProblem otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise TextProblem(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TextProblem("is not a regular file")
        if st.st_size > limit:
            raise TextProblem(f"is larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise TextProblem(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TextProblem(f"is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TextProblem("is not UTF-8 text") from None


def _line(node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return f"line {mark.line + 1}: " if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys or deep nesting."""

    _depth = 0

    def _next(self) -> Any:
        return self.peek_event()  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self._next()
            raise TextProblem(f"{_line(event)}YAML aliases (*name) are not allowed here")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TextProblem(f"{_line(self._next())}nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise TextProblem(
                            f"{_line(key_node)}key {cut(key_node.value)} is given twice"
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text to Python values; TextProblem (one line, with the line number) otherwise."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except TextProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        raise TextProblem(f"{_line(exc.problem_mark)}not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise TextProblem(f"not valid YAML: {cut(str(exc))}") from None
    except ValueError as exc:  # a value Python refuses, such as a 5,000-digit integer
        if "integer string conversion" in str(exc):  # worded differently by each CPython
            limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
            raise TextProblem(f"an integer longer than {limit} digits cannot be read") from None
        raise TextProblem(f"a value cannot be read: {cut(str(exc))}") from None
    except RecursionError:
        raise TextProblem(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
