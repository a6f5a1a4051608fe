"""``[server] workers`` above 1 needs a lock provider and a cache whose spec declares
``CAP_SHARED``: core reads the declared capability, never the backend's name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from angos_core import BackendSpec, hookimpl
from angos_core.errors import ConfigError
from angos_core.hookspecs import CAP_SHARED
from angos_core.http.app import config_from_toml
from angos_core.serve import check_shared_backends


@dataclasses.dataclass
class NoSettings:
    pass


class LocalPlugin:
    """A lock provider and a cache that only work inside one process (not declared shared),
    and a pair that declares itself shared."""

    @hookimpl
    def angos_lock_providers(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec("solo", lambda c: c, NoSettings),
            BackendSpec("everyone", lambda c: c, NoSettings, capabilities=frozenset({CAP_SHARED})),
        ]

    @hookimpl
    def angos_caches(self) -> list[BackendSpec[Any]]:
        return [
            BackendSpec("solo", lambda c: c, NoSettings),
            BackendSpec("everyone", lambda c: c, NoSettings, capabilities=frozenset({CAP_SHARED})),
        ]


def toml(root: Path, locks: str, cache: str) -> str:
    return (
        f'[blob_store.fs]\nroot_dir = "{root}"\n[metadata_store.fs]\n'
        f"[metadata_store.fs.{locks}]\n[cache.{cache}]\n"
    )


def test_a_lock_provider_not_declared_shared_is_refused(tmp_path: Path) -> None:
    config = config_from_toml(toml(tmp_path, "solo", "everyone"), [LocalPlugin()])
    with pytest.raises(ConfigError) as info:
        check_shared_backends(config, 2)
    assert info.value.key == "server.workers"
    assert "the lock provider is 'solo'" in str(info.value)
    check_shared_backends(config, 1)


def test_a_cache_not_declared_shared_is_refused(tmp_path: Path) -> None:
    config = config_from_toml(toml(tmp_path, "everyone", "solo"), [LocalPlugin()])
    with pytest.raises(ConfigError) as info:
        check_shared_backends(config, 3)
    assert "3 workers need a cache shared by every process" in str(info.value)
    assert "the cache is 'solo'" in str(info.value)


def test_declared_shared_backends_allow_several_workers(tmp_path: Path) -> None:
    config = config_from_toml(toml(tmp_path, "everyone", "everyone"), [LocalPlugin()])
    assert config.lock_provider.shared and config.cache.shared
    check_shared_backends(config, 4)
    memory = config_from_toml(toml(tmp_path, "memory", "memory"))
    assert not memory.lock_provider.shared and not memory.cache.shared
