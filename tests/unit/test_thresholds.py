"""Per-host alert thresholds: flags, validation, and agreement with the rules' defaults."""

from __future__ import annotations

import pytest

from exporter.cli import parse_config
from exporter.config import FLAG_KEYS, ConfigError, settings_from
from exporter.filesystem import data_root_path
from exporter.thresholds import BY_NAME, THRESHOLDS, parse_bytes


def config(*argv: str):
    return parse_config(list(argv), {}).target.settings


def test_unset_thresholds_are_not_exported():
    assert config().alert_thresholds == ()


def test_flags_set_thresholds():
    c = config(
        "--alert.image-disk-share=0.9",
        "--alert.image-disk-budget=200GiB",
        "--alert.dangling-images",
        "0",
    )
    assert c.alert_thresholds == (
        ("image_disk_share", 0.9),
        ("image_disk_budget_bytes", 200 * 1024**3),
        ("dangling_images", 0.0),
    )


def test_flag_names_follow_threshold_names():
    assert [t.flag for t in THRESHOLDS] == [
        "--alert.image-disk-share",
        "--alert.reclaimable-share",
        "--alert.image-disk-budget",
        "--alert.dangling-images",
        "--alert.dangling-volumes",
        "--alert.idle-build-cache",
        "--alert.container-restarts",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1073741824", 1024**3), ("40GB", 40e9), ("1.5TiB", 1.5 * 1024**4), ("512 MiB", 512 << 20)],
)
def test_byte_sizes(text, expected):
    assert parse_bytes(text, "--x") == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("--alert.image-disk-share=1.5", "--alert.image-disk-share '1.5' is not a share between"),
        ("--alert.reclaimable-share=0", "--alert.reclaimable-share '0' is not a share between"),
        ("--alert.image-disk-budget=lots", "--alert.image-disk-budget 'lots' is not a size"),
        ("--alert.image-disk-budget=0GiB", "--alert.image-disk-budget must be more than 0"),
        ("--alert.dangling-images=2.5", "--alert.dangling-images '2.5' is not a whole number"),
        ("--alert.dangling-images=x", "--alert.dangling-images 'x' is not a number"),
    ],
)
def test_bad_thresholds_are_one_sentence(argv, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        config(argv)


def test_data_root_filesystem_setting(tmp_path):
    assert config().data_root_filesystem == "auto"
    assert config("--collect.data-root-filesystem=off").data_root_filesystem == "off"
    here = str(tmp_path)
    assert data_root_path("auto", "unix:///run/docker.sock", here) == here
    assert data_root_path("auto", "unix:///run/docker.sock", here + "/missing") is None
    assert data_root_path("auto", "tcp://10.0.0.5:2376", here) is None  # another machine's disk
    assert data_root_path("auto", "unix:///run/docker.sock", "") is None  # /info unknown
    assert data_root_path("off", "unix:///run/docker.sock", here) is None
    assert data_root_path("/host/var/lib/docker", "tcp://h:2376", "") == "/host/var/lib/docker"


def test_by_name():
    assert BY_NAME["dangling_images"].default == 20


def test_a_target_in_the_config_file_overrides_the_flags():
    base = config("--alert.image-disk-share=0.9", "--alert.dangling-images=5")
    names = {key: f"targets.a.{key}" for key in FLAG_KEYS}
    own = settings_from({"alert_image_disk_share": 0.5}, names, base)
    assert own.alert_thresholds == (("image_disk_share", 0.5), ("dangling_images", 5.0))
    message = r"^targets\.a\.alert_image_disk_share '2' is not a share"
    with pytest.raises(ConfigError, match=message):
        settings_from({"alert_image_disk_share": 2}, names, base)
