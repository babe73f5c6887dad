"""The HTTP app driven directly through WSGI: formats, gzip, health, readiness."""

from __future__ import annotations

import gzip

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.cli import parse_config
from exporter.target import SingleTarget, Target
from exporter.web import answered_at_once, make_app
from tests.support.inventory import publish, synthetic_inventory
from tests.support.promql import parse_samples
from tests.support.wsgi import call


def make(ready: bool = True):
    flags = ["--collect.disk-usage-interval", "0", "--collect.container-labels", ""]
    target = Target(parse_config(flags, {}).target)
    if ready:
        publish(target.state.inventory, synthetic_inventory(labels=()))
        target.exposition.refresh()
    return make_app(SingleTarget(target)), target.exposition


def test_metrics_text_by_default():
    app, _ = make()
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert parse_samples(body.decode())[("docker_images", frozenset())] == 4.0


def test_metrics_openmetrics_and_gzip():
    app, _ = make()
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    _status, headers, body = call(app, "/metrics", accept=accept, accept_encoding="gzip, deflate")
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    names = {f.name for f in om_parse(text)}
    assert "docker_exporter_collection_errors" in names and "docker_images" in names


def test_scrapes_serve_the_rendering_and_do_not_render():
    app, exposition = make()
    before = exposition.renders
    rendered = exposition.current
    environ = {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}
    for _ in range(50):
        body = list(app(environ, lambda status, headers: None))
        assert len(body) == 1 and body[0] is rendered.text  # the very bytes, not a copy
    assert exposition.renders == before and exposition.current is rendered


def test_landing_health_and_ready():
    app, _ = make()
    status, _headers, body = call(app, "/")
    assert status == "200 OK" and b'href="metrics"' in body
    assert call(app, "/-/healthy")[0] == "200 OK"
    assert call(app, "/-/ready")[0] == "200 OK"
    assert call(app, "/nope")[0] == "404 Not Found"
    assert call(app, "/targets")[0] == "404 Not Found"  # only with --config.file
    assert call(app, "/metrics", method="POST")[0] == "405 Method Not Allowed"
    not_ready, _ = make(ready=False)
    assert call(not_ready, "/-/ready")[0] == "503 Service Unavailable"
    assert call(not_ready, "/-/healthy")[0] == "200 OK"


def test_a_scrape_of_a_variant_already_built_is_answered_at_once():
    flags = ["--collect.disk-usage-interval", "0", "--collect.container-labels", ""]
    target = Target(parse_config(flags, {}).target)
    publish(target.state.inventory, synthetic_inventory(labels=()))
    target.exposition.refresh()
    serving = SingleTarget(target)
    app, at_once = make_app(serving), answered_at_once(serving)
    om = {
        "HTTP_ACCEPT": "application/openmetrics-text;version=1.0.0",
        "HTTP_ACCEPT_ENCODING": "gzip",
    }
    scrape = {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "QUERY_STRING": "", **om}
    # nothing built yet: the first scrape of a variant builds it, in a worker
    assert at_once(scrape) is False
    assert call(app, "/metrics", accept=om["HTTP_ACCEPT"], accept_encoding="gzip")[0] == "200 OK"
    assert at_once(scrape) is True
    assert at_once({**scrape, "REQUEST_METHOD": "HEAD"}) is True
    # the next rendering builds the variants scraped before it is published
    publish(target.state.inventory, synthetic_inventory(labels=()))
    target.exposition.refresh()
    assert at_once(scrape) is True
    # another variant, a query, another path or method: not at once
    assert at_once({**scrape, "HTTP_ACCEPT_ENCODING": ""}) is False
    assert at_once({**scrape, "QUERY_STRING": "target=a"}) is False
    assert at_once({**scrape, "PATH_INFO": "/"}) is False
    assert at_once({**scrape, "REQUEST_METHOD": "POST"}) is False
    # another telemetry path
    assert answered_at_once(serving, "/x")(scrape) is False
    assert answered_at_once(serving, "/x")({**scrape, "PATH_INFO": "/x"}) is True


def test_a_fleet_is_never_answered_at_once():
    class Fleet:
        def exposition_at_once(self) -> None:
            return None

    scrape = {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    assert answered_at_once(Fleet(), "/metrics")(scrape) is False  # type: ignore[arg-type]
