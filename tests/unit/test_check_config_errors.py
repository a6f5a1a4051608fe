"""``angos check-config`` reports every problem of a file, one line each, and exits 1;
``load_config`` raises one error carrying them all (what ``angos serve`` prints). Also the
install hints for a backend that is not installed."""

from __future__ import annotations

from pathlib import Path

import angos_fs.plugin
import angos_memory.plugin
import pytest

from angos_core.cli import main
from angos_core.config import load_config
from angos_core.errors import ConfigError, ConfigErrors
from angos_core.plugins import (
    KINDS,
    REPOSITORY_PLUGINS,
    BackendCatalogue,
    load_catalogue,
    make_plugin_manager,
)

#: Problems in every section, of every sort: an unknown section, wrong types, bad values,
#: unknown keys, a missing required key (s3's bucket), an unknown cache backend.
BROKEN = """
[serer]
port = 1

[server]
port = "8000"
workers = 0
keepalive_timeout_secs = -1

[global]
enable_redirect = "yes"

[log]
level = "loud"

[maintenance.upload_purging]
age_secs = 0

[blob_store.fs]
rootdir = "/tmp/x"
sync_to_disk = "no"

[metadata_store.s3]
region = 5

[cache.nope]
"""

EXPECTED_KEYS = [
    "serer",
    "server.port",
    "global.enable_redirect",
    "log.level",
    "maintenance.upload_purging.age_secs",
    "blob_store.fs.rootdir",
    "blob_store.fs.sync_to_disk",
    "metadata_store.s3.region",
    "metadata_store.s3.bucket",
    "cache.nope",
]


def _keys(lines: list[str]) -> list[str]:
    prefix = "angos: config error: "
    assert all(line.startswith(prefix) for line in lines), lines
    return [line[len(prefix) :].split(": ", 1)[0] for line in lines]


def test_every_error_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(BROKEN)
    assert main(["check-config", "-c", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    keys = _keys(lines)
    # The server's own checks run once its types are right, so port's type error stands
    # alone there; every other section reports each of its problems.
    assert sorted(keys) == sorted(EXPECTED_KEYS), lines
    by_key = dict(zip(keys, lines, strict=True))
    assert "unknown section; known sections: server" in by_key["serer"]
    assert "expected int, got str '8000'" in by_key["server.port"]
    assert "expected bool" in by_key["global.enable_redirect"]
    assert "expected 'debug' or 'info'" in by_key["log.level"]
    assert "must be positive" in by_key["maintenance.upload_purging.age_secs"]
    assert (
        "unknown key; known keys here: cache_listings, listing_snapshot_secs, root_dir"
        in by_key["blob_store.fs.rootdir"]
    )
    assert "required key is missing" in by_key["metadata_store.s3.bucket"]
    assert "cache 'nope' not found; installed:" in by_key["cache.nope"]


def test_server_checks_report_each_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[server]\nport = 70000\nworkers = 0\nhealth_timeout_secs = 0\n"
        "[blob_store.fs]\nroot_dir = 'd'\n"
    )
    assert main(["check-config", "-c", str(config)]) == 1
    keys = _keys(capsys.readouterr().err.strip().splitlines())
    assert keys == ["server.port", "server.workers", "server.health_timeout_secs"]


def test_an_inherited_setting_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The metadata store inherits [blob_store.fs]: its bad key is the blob store's problem,
    not a second one."""
    config = tmp_path / "c.toml"
    config.write_text(
        "[blob_store.fs]\nroot_dir = 'd'\nbogus = 1\n[metadata_store.fs]\nother = 2\n"
    )
    assert main(["check-config", "-c", str(config)]) == 1
    keys = _keys(capsys.readouterr().err.strip().splitlines())
    assert keys == ["blob_store.fs.bogus", "metadata_store.fs.other"]


def test_an_unknown_blob_store_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[blob_store.s4]\n[log]\nformat = 'xml'\n")
    assert main(["check-config", "-c", str(config)]) == 1
    keys = _keys(capsys.readouterr().err.strip().splitlines())
    assert keys == ["log.format", "blob_store.s4"]


def test_load_config_raises_one_error_carrying_all(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(BROKEN)
    with pytest.raises(ConfigErrors) as info:
        load_config(config, load_catalogue())
    error = info.value
    assert isinstance(error, ConfigError)
    assert sorted(e.key for e in error.errors) == sorted(EXPECTED_KEYS)
    # The first problem stays readable as a plain ConfigError.
    assert (error.key, error.message) == (error.errors[0].key, error.errors[0].message)
    assert str(error).splitlines() == [str(e) for e in error.errors]


def test_one_error_is_a_plain_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[blob_store.fs]\nroot_dir = 'd'\nbogus = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, load_catalogue())
    assert type(info.value) is ConfigError
    assert info.value.errors == [info.value]


# ---------------------------------------------------------------------- install hints


def _fs_only() -> BackendCatalogue:
    pm = make_plugin_manager([angos_fs.plugin, angos_memory.plugin], load_entrypoints=False)
    return BackendCatalogue.from_plugin_manager(pm)


def test_a_repository_plugin_says_how_to_install_it() -> None:
    message = _fs_only().not_found("blob_store", "s3")
    assert message == (
        "blob_store 's3' not found; installed: fs; angos-s3 provides it and is not on a "
        "package index: pip install -e plugins/angos-s3 (from a checkout), or pip install "
        "--find-links dist angos-s3 (after bash scripts/build-wheels)"
    )
    assert "pip install -e examples/angos-sqlite" in _fs_only().not_found(
        "metadata_store", "sqlite"
    )
    assert "pip install -e plugins/angos-redis" in _fs_only().not_found("lock_provider", "redis")


def test_an_unknown_name_lists_the_repository_plugins() -> None:
    message = _fs_only().not_found("blob_store", "s4")
    assert message == (
        "blob_store 's4' not found; installed: fs; no Angos plugin provides 's4' (the "
        "repository's plugins provide blob_store fs (angos-fs), s3 (angos-s3)); check the "
        "name, or install the third-party plugin that provides it (by convention the "
        "distribution angos-s4)"
    )
    assert "\n" not in message


def test_a_missing_lock_provider_gets_the_hint(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[blob_store.fs]\nroot_dir = 'd'\n[metadata_store.fs.redis]\nurl = 'u'\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, _fs_only())
    assert info.value.key == "metadata_store.fs.redis"
    assert "pip install -e plugins/angos-redis" in info.value.message


def test_repository_plugins_match_what_the_plugins_declare() -> None:
    """The hint table is what the installed repository plugins really provide."""
    catalogue = load_catalogue()
    declared: dict[str, dict[str, set[str]]] = {}
    for kind in KINDS:
        for name in catalogue.names(kind):
            spec = catalogue.get(kind, name)
            declared.setdefault(spec.distribution, {}).setdefault(kind, set()).add(name)
    expected = {
        dist: {kind: set(names) for kind, names in provides.items()}
        for dist, (_, provides) in REPOSITORY_PLUGINS.items()
    }
    assert {d: declared[d] for d in expected if d in declared} == expected
    for dist, (folder, _) in REPOSITORY_PLUGINS.items():
        assert (Path(__file__).resolve().parents[2] / folder / "pyproject.toml").is_file(), dist
