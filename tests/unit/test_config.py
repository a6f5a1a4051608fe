"""Config parsing: TOML -> typed config, defaults, backend selection, and errors naming keys.

The catalogue is built from the two built-in plugins plus fake plugins registered here, so
the expected "installed" lists do not depend on what else is pip-installed.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any, Literal

import angos_fs.plugin
import angos_memory.plugin
import pytest
from angos_fs import FsConfig
from angos_memory import MemoryCacheConfig, MemoryLockConfig

from angos_core import BackendSpec, hookimpl
from angos_core.config import (
    DEFAULT_ROOT_DIR,
    AngosConfig,
    ByteSize,
    load_config,
    parse_config,
    parse_table,
)
from angos_core.errors import ConfigError
from angos_core.plugins import BackendCatalogue, load_catalogue, make_plugin_manager


@dataclasses.dataclass
class FakeLockConfig:
    url: str
    ttl: float = 10.0
    key_prefix: str = "locks"


@dataclasses.dataclass
class FakeStoreConfig:
    bucket: str
    part_size: ByteSize = dataclasses.field(default_factory=lambda: ByteSize(50 * 1024**2))
    jobs: int = 4
    mode: Literal["fast", "safe"] = "safe"
    tags: list[str] = dataclasses.field(default_factory=list)


class FakePlugin:
    """A third-party plugin: blob and metadata store "fake", lock "fakelock", cache "fakecache"."""

    @hookimpl
    def angos_blob_stores(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("fake", lambda c: c, FakeStoreConfig, distribution="angos-fake")]

    @hookimpl
    def angos_metadata_stores(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("fake", lambda c: c, FakeStoreConfig, distribution="angos-fake")]

    @hookimpl
    def angos_lock_providers(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("fakelock", lambda c: c, FakeLockConfig, distribution="angos-fake")]

    @hookimpl
    def angos_caches(self) -> list[BackendSpec[Any]]:
        return [BackendSpec("fakecache", lambda c: c, FakeLockConfig, distribution="angos-fake")]


@pytest.fixture(scope="module")
def catalogue() -> BackendCatalogue:
    pm = make_plugin_manager(
        [angos_fs.plugin, angos_memory.plugin, FakePlugin()], load_entrypoints=False
    )
    return BackendCatalogue.from_plugin_manager(pm)


def parse(text: str, catalogue: BackendCatalogue) -> AngosConfig:
    import tomllib

    return parse_config(tomllib.loads(textwrap.dedent(text)), catalogue)


def config_error(text: str, catalogue: BackendCatalogue) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, catalogue)
    return info.value


# ---------------------------------------------------------------------- defaults


def test_embedded_default(
    catalogue: BackendCatalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.toml here
    config = load_config(None, catalogue)
    assert config.source == "<embedded default>"
    assert (config.server.bind_address, config.server.port) == ("127.0.0.1", 8000)
    assert config.blob_store.name == "fs"
    assert config.blob_store.settings == FsConfig(root_dir=DEFAULT_ROOT_DIR, sync_to_disk=False)
    assert DEFAULT_ROOT_DIR == "./registry-data"
    assert config.metadata_store.name == "fs"
    assert config.metadata_store.settings == config.blob_store.settings
    assert config.lock_provider.name == "memory"
    assert config.lock_provider.settings == MemoryLockConfig()
    assert config.cache.name == "memory"
    assert config.cache.settings == MemoryCacheConfig()
    assert config.global_.max_manifest_size == 4 * 1024 * 1024
    assert (config.log.format, config.log.level) == ("text", "info")


def test_embedded_default_with_the_installed_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, load_catalogue())
    assert (config.blob_store.name, config.metadata_store.name) == ("fs", "fs")
    assert (config.lock_provider.name, config.cache.name) == ("memory", "memory")
    assert config.blob_store.spec.distribution == "angos-fs"
    assert config.lock_provider.spec.distribution == "angos-memory"
    assert type(config.blob_store.build()).__name__ == "FsBlobStore"
    assert type(config.metadata_store.build()).__name__ == "FsMetadataStore"
    assert type(config.lock_provider.build()).__name__ == "MemoryLockProvider"
    assert type(config.cache.build()).__name__ == "MemoryCache"


def test_config_toml_in_the_working_directory(
    catalogue: BackendCatalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text(
        '[server]\nport = 5000\n[blob_store.fs]\nroot_dir = "d"\n'
    )
    config = load_config(None, catalogue)
    assert config.source == "config.toml"
    assert config.server.port == 5000
    assert config.blob_store.settings.root_dir == "d"


def test_explicit_file(catalogue: BackendCatalogue, tmp_path: Path) -> None:
    path = tmp_path / "angos.toml"
    path.write_text('[blob_store.fs]\nroot_dir = "/srv/registry"\nsync_to_disk = true\n')
    config = load_config(path, catalogue)
    assert config.source == str(path)
    assert config.blob_store.settings == FsConfig("/srv/registry", True)


def test_unreadable_file_and_bad_toml(catalogue: BackendCatalogue, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", catalogue)
    assert "missing.toml" in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[blob_store.fs\nroot_dir = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, catalogue)
    assert "bad.toml" in str(info.value) and "not valid TOML" in str(info.value)


# ---------------------------------------------------------------------- selection


def test_metadata_store_inherits_the_blob_store_settings(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        root_dir = "/data"
        sync_to_disk = true
        """,
        catalogue,
    )
    assert config.metadata_store.name == "fs"
    assert config.metadata_store.settings == FsConfig("/data", True)


def test_metadata_store_overrides_what_it_names(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        root_dir = "/data/blobs"
        sync_to_disk = true
        [metadata_store.fs]
        root_dir = "/data/metadata"
        """,
        catalogue,
    )
    assert config.blob_store.settings == FsConfig("/data/blobs", True)
    assert config.metadata_store.settings == FsConfig("/data/metadata", True)


def test_split_backends_do_not_inherit(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fake]
        bucket = "registry-blobs"
        jobs = 8
        [metadata_store.fs]
        root_dir = "/data/metadata"
        """,
        catalogue,
    )
    assert config.blob_store.settings == FakeStoreConfig(bucket="registry-blobs", jobs=8)
    assert config.metadata_store.settings == FsConfig("/data/metadata", False)


def test_lock_subtable_selects_the_lock_provider(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        root_dir = "/mnt/nfs/registry"
        [metadata_store.fs]
        root_dir = "/mnt/nfs/registry"
        [metadata_store.fs.fakelock]
        url = "redis://redis:6379"
        ttl = 10
        """,
        catalogue,
    )
    assert config.lock_provider.name == "fakelock"
    assert config.lock_provider.settings == FakeLockConfig(url="redis://redis:6379", ttl=10.0)
    assert config.metadata_store.settings == FsConfig("/mnt/nfs/registry", False)


def test_lock_subtable_alone_keeps_the_inherited_store(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        root_dir = "/data"
        sync_to_disk = true
        [metadata_store.fs.fakelock]
        url = "redis://r"
        """,
        catalogue,
    )
    assert config.metadata_store.settings == FsConfig("/data", True)
    assert config.lock_provider.name == "fakelock"


def test_memory_lock_settings(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        [metadata_store.fs.memory]
        ttl = 5
        max_retries = 20
        retry_delay_ms = 50
        """,
        catalogue,
    )
    assert config.lock_provider.settings == MemoryLockConfig(5.0, 20, 50)


def test_lock_errors(catalogue: BackendCatalogue) -> None:
    error = config_error(
        """
        [blob_store.fs]
        [metadata_store.fs.fakelock]
        url = "redis://a"
        [metadata_store.fs.memory]
        ttl = 1
        """,
        catalogue,
    )
    assert error.key == "metadata_store.fs"
    assert "fakelock" in error.message and "memory" in error.message

    error = config_error(
        """
        [blob_store.fs]
        [metadata_store.fs.redsi]
        url = "redis://a"
        """,
        catalogue,
    )
    assert error.key == "metadata_store.fs.redsi"
    assert "installed: fakelock, memory" in error.message

    error = config_error(
        """
        [blob_store.fs]
        [metadata_store.fs.fakelock]
        url = "redis://a"
        retries = 3
        """,
        catalogue,
    )
    assert error.key == "metadata_store.fs.fakelock.retries"

    error = config_error(
        """
        [blob_store.fs]
        [metadata_store.fs.fakelock]
        ttl = 3
        """,
        catalogue,
    )
    assert error.key == "metadata_store.fs.fakelock.url"
    assert "required" in error.message


def test_cache_selection(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [blob_store.fs]
        [cache.fakecache]
        url = "redis://redis:6379"
        key_prefix = "cache"
        """,
        catalogue,
    )
    assert config.cache.name == "fakecache"
    assert config.cache.settings == FakeLockConfig(url="redis://redis:6379", key_prefix="cache")
    config = parse("[blob_store.fs]\n[cache.memory]\nmax_entries = 5\n", catalogue)
    assert config.cache.settings == MemoryCacheConfig(max_entries=5)


# ---------------------------------------------------------------------- errors


def test_unknown_keys_name_the_key(catalogue: BackendCatalogue) -> None:
    error = config_error('[blob_store.fs]\nrootdir = "/d"\n', catalogue)
    assert error.key == "blob_store.fs.rootdir"
    assert "unknown key" in error.message and "root_dir" in error.message
    assert str(error).startswith("blob_store.fs.rootdir: ")

    error = config_error('[blob_store.fs]\n[metadata_store.fs]\nroot = "/m"\n', catalogue)
    assert error.key == "metadata_store.fs.root"

    error = config_error("[blob_store.fs]\n[server]\nhost = 'x'\n", catalogue)
    assert error.key == "server.host"

    error = config_error("[blob_store.fs]\n[storage]\nx = 1\n", catalogue)
    assert error.key == "storage"
    assert "unknown section" in error.message

    error = config_error("[blob_store.fs]\n[cache.memory]\nmax_entrys = 5\n", catalogue)
    assert error.key == "cache.memory.max_entrys"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = '8000'\n[blob_store.fs]\n", "server.port"),
        ("[server]\nport = true\n[blob_store.fs]\n", "server.port"),
        ("[blob_store.fs]\nsync_to_disk = 1\n", "blob_store.fs.sync_to_disk"),
        ("[blob_store.fs]\nroot_dir = 42\n", "blob_store.fs.root_dir"),
        ("[blob_store.fake]\nbucket = 'b'\njobs = 1.5\n", "blob_store.fake.jobs"),
        ("[blob_store.fake]\nbucket = 'b'\npart_size = 'big'\n", "blob_store.fake.part_size"),
        ("[blob_store.fake]\nbucket = 'b'\nmode = 'reckless'\n", "blob_store.fake.mode"),
        ("[blob_store.fake]\nbucket = 'b'\ntags = 'x'\n", "blob_store.fake.tags"),
        ("[blob_store.fake]\nbucket = 'b'\ntags = ['x', 2]\n", "blob_store.fake.tags[1]"),
        ("[blob_store.fs]\n[log]\nlevel = 'loud'\n", "log.level"),
        ("[blob_store.fs]\n[global]\nmax_manifest_size = -1\n", "global.max_manifest_size"),
        (
            "[blob_store.fs]\n[metadata_store.fs.memory]\nttl = 'long'\n",
            "metadata_store.fs.memory.ttl",
        ),
    ],
)
def test_wrong_types_name_the_key(catalogue: BackendCatalogue, text: str, key: str) -> None:
    error = config_error(text, catalogue)
    assert error.key == key
    assert str(error).startswith(f"{key}: ")


def test_port_out_of_range(catalogue: BackendCatalogue) -> None:
    error = config_error("[server]\nport = 70000\n[blob_store.fs]\n", catalogue)
    assert error.key == "server.port"


def test_two_backends_for_one_kind(catalogue: BackendCatalogue) -> None:
    error = config_error(
        "[blob_store.fs]\nroot_dir = 'a'\n[blob_store.fake]\nbucket = 'b'\n", catalogue
    )
    assert error.key == "blob_store"
    assert "fake, fs" in error.message and "exactly one" in error.message
    error = config_error(
        "[blob_store.fs]\n[metadata_store.fs]\n[metadata_store.fake]\nbucket = 'b'\n", catalogue
    )
    assert error.key == "metadata_store"
    error = config_error(
        "[blob_store.fs]\n[cache.memory]\n[cache.fakecache]\nurl = 'u'\n", catalogue
    )
    assert error.key == "cache"


def test_missing_blob_store(catalogue: BackendCatalogue) -> None:
    error = config_error("[server]\nport = 8000\n", catalogue)
    assert error.key == "blob_store"
    error = config_error("[blob_store]\n", catalogue)
    assert error.key == "blob_store"
    error = config_error("blob_store = 'fs'\n", catalogue)
    assert error.key == "blob_store"


def test_missing_plugin_lists_what_is_installed(catalogue: BackendCatalogue) -> None:
    error = config_error("[blob_store.s4]\nbucket = 'b'\n", catalogue)
    assert error.key == "blob_store.s4"
    assert "blob_store 's4' not found; installed: fake, fs" in error.message
    assert "no Angos plugin provides 's4'" in error.message and "s3 (angos-s3)" in error.message

    error = config_error("[blob_store.fs]\n[metadata_store.sqlite]\npath = 'x'\n", catalogue)
    assert error.key == "metadata_store.sqlite"
    assert "installed: fake, fs" in error.message

    error = config_error("[blob_store.fs]\n[cache.redis]\nurl = 'u'\n", catalogue)
    assert error.key == "cache.redis"
    assert "installed: fakecache, memory" in error.message
    assert "pip install -e plugins/angos-redis" in error.message


def test_core_alone_names_the_package_to_install() -> None:
    bare = BackendCatalogue.from_plugin_manager(make_plugin_manager(load_entrypoints=False))
    with pytest.raises(ConfigError) as info:
        parse("[blob_store.fs]\n", bare)
    assert info.value.key == "blob_store.fs"
    assert "installed: none" in info.value.message
    assert "pip install -e plugins/angos-fs" in info.value.message
    assert "pip install --find-links dist angos-fs" in info.value.message


# ---------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (123, 123),
        ("123", 123),
        ("1B", 1),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("50MiB", 50 * 1024**2),
        ("100MB", 100 * 1000**2),
        ("5GB", 5 * 1000**3),
        ("5 GiB", 5 * 1024**3),
        ("2TB", 2 * 1000**4),
        ("1TiB", 1024**4),
        ("1.5GiB", 3 * 512 * 1024**2),
        ("5gb", 5 * 1000**3),
        ("8mib", 8 * 1024**2),
    ],
)
def test_byte_sizes_mean_what_they_say(value: object, size: int) -> None:
    parsed = ByteSize.parse(value, "k")
    assert parsed == size
    assert isinstance(parsed, ByteSize)


@pytest.mark.parametrize("value", ["5 parsecs", "MiB", "-5MB", "", "5GBs", True, 1.5, [1], -1])
def test_bad_byte_sizes(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        ByteSize.parse(value, "blob_store.s3.multipart_part_size")
    assert info.value.key == "blob_store.s3.multipart_part_size"


def test_byte_size_in_a_table() -> None:
    parsed = parse_table(FakeStoreConfig, {"bucket": "b", "part_size": "5GB"}, "blob_store.fake")
    assert parsed.part_size == 5_000_000_000
    assert parse_table(FakeStoreConfig, {"bucket": "b"}, "x").part_size == 50 * 1024**2
