"""The rendered exposition: escaping anything a container carries, in both formats."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.exposition import Rendered
from tests.support.inventory import inventory_from, rendered
from tests.support.promql import parse_samples

KEYS = ("com.docker.compose.project", "weird")


def rendered_for(containers: list[dict[str, Any]], images: list[dict[str, Any]]) -> Rendered:
    return rendered(inventory_from(images, containers, now=1.0e9, labels=KEYS), labels=KEYS)


hostile = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
# a tag is what follows the last ':' after the last '/', so it holds neither
hostile_tag = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=":/"), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(name=hostile, label=hostile, tag=hostile_tag)
@example(name="/", label="", tag="")  # the name "//" on the wire, found by an earlier run
@example(name="", label="\\", tag="")
def test_any_name_label_or_tag_survives_both_formats(name, label, tag):
    containers = [
        {
            "Id": "c" * 64,
            "Names": ["/" + name],
            "Image": tag,
            "ImageID": "sha256:" + "a" * 64,
            "State": "running",
            "Status": "Up",
            "Labels": {"weird": label},
        }
    ]
    images = [{"Id": "sha256:" + "a" * 64, "RepoTags": [f"repo:{tag}"], "Size": 1, "Created": 1}]
    out = rendered_for(containers, images)
    expected_name = name or "c" * 12
    samples = parse_samples(out.text.decode())
    key = frozenset(
        {
            "name": expected_name,
            "label_com_docker_compose_project": "",
            "label_weird": label,
        }.items()
    )
    assert samples[("docker_container_labels", key)] == 1.0
    tag_key = frozenset({"image_id": "a" * 12, "repository": "repo", "tag": tag}.items())
    assert samples[("docker_image_tag_info", tag_key)] == 1.0
    om = {s.name: s for f in om_parse(out.openmetrics.decode()) for s in f.samples}
    assert om["docker_container_info"].labels["image"] == tag


def test_quotes_backslashes_newlines_are_escaped_on_the_wire():
    containers = [
        {
            "Id": "c" * 64,
            "Names": ["/x"],
            "Image": "i",
            "ImageID": "sha256:" + "a" * 64,
            "State": "running",
            "Status": "Up",
            "Labels": {"weird": 'say "hi" \\ back\nslash é'},
        }
    ]
    text = rendered_for(containers, []).text.decode()
    assert 'label_weird="say \\"hi\\" \\\\ back\\nslash é"' in text
