"""Reading expositions as samples, and a PromQL tokenizer that finds the metrics a query reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import ALL

# --------------------------------------------------------------------------- samples

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a text exposition, keyed by (name, label set)."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    """The value of the sample with exactly these labels, or None."""
    return samples.get((metric, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of ``name``."""
    return [dict(labels) for (n, labels) in samples if n == name]


# --------------------------------------------------------------------------- exposed names

# What prometheus_client's ProcessCollector exposes (the exporter registers it).
PROCESS_METRICS = frozenset(
    {
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    }
)


def exporter_metric_names() -> frozenset[str]:
    """Sample names the exporter exposes: every MetricSpec (counters end in _total) + process_*."""
    return frozenset(spec.name for spec in ALL) | PROCESS_METRICS


# --------------------------------------------------------------------------- PromQL tokens

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
        "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
        "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
        "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
        "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
        "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
        "info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
        "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
        "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
        "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
        "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
        "tanh", "time", "timestamp", "vector", "year",
        "start", "end",  # the @ modifier's start() and end()
    }
)  # fmt: skip
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
    |(?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(expr: str) -> list[Token]:
    """PromQL (with Grafana $variables) to tokens, whitespace and comments dropped."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group()))
        pos = m.end()
    return tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


def _matchers(tokens: list[Token], i: int, expr: str) -> tuple[list[tuple[str, str, str]], int]:
    """Parse `{label op "value", ...}` starting at the `{` at i; return (matchers, next i)."""
    assert tokens[i].text == "{"
    out: list[tuple[str, str, str]] = []
    i += 1
    while tokens[i].text != "}":
        label, op, value = tokens[i], tokens[i + 1], tokens[i + 2]
        if label.kind not in ("ident", "string") or op.text not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"bad label matcher at {label.text!r} in {expr!r}")
        if value.kind != "string":
            raise ValueError(f"label value is not a string at {value.text!r} in {expr!r}")
        name = _unquote(label.text) if label.kind == "string" else label.text
        out.append((name, op.text, _unquote(value.text)))
        i += 3
        if tokens[i].text == ",":
            i += 1
    return out, i + 1


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in expr, with its metric name (None for `{...}` only) and matchers.

    Identifiers are label names inside braces and in by/without/on/ignoring/group_left/
    group_right lists; function or aggregation names before `(`; keywords; anything else is a
    metric name. An unknown identifier followed by `(` raises: no function typo slips through.
    """
    tokens = tokenize(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if tok.kind == "op" and tok.text == "{":
            matchers, i = _matchers(tokens, i, expr)
            found.append(Selector(None, matchers))
            continue
        if tok.kind != "ident":
            i += 1
            continue
        word = tok.text
        if word.lower() in GROUPING:
            i += 1
            if nxt == "(":  # label list
                i += 1
                while tokens[i].text != ")":
                    if tokens[i].kind != "ident" and tokens[i].text != ",":
                        raise ValueError(f"bad label list near {tokens[i].text!r} in {expr!r}")
                    i += 1
                i += 1
            continue
        if word.lower() in KEYWORDS:
            i += 1
            continue
        if word in AGGREGATIONS and nxt in ("(", "by", "without"):
            i += 1
            continue
        if nxt == "(":
            if word in FUNCTIONS:
                i += 1
                continue
            raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
        selector = Selector(word)
        i += 1
        if nxt == "{":
            selector.matchers, i = _matchers(tokens, i, expr)
        found.append(selector)
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads; a selector without a plain name raises."""
    names: set[str] = set()
    for sel in selectors(expr):
        name = sel.name
        if name is None:
            eq = [v for (label, op, v) in sel.matchers if label == "__name__" and op == "="]
            if not eq:
                raise ValueError(f"selector without a metric name in {expr!r}")
            name = eq[0]
        names.add(name)
    return names
