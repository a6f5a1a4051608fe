"""The ``angos-memory`` entry point: lock provider ``memory`` and cache ``memory``."""

from __future__ import annotations

from typing import Any

from angos_core import BackendSpec, hookimpl
from angos_memory.cache import MemoryCache, MemoryCacheConfig
from angos_memory.lock import MemoryLockConfig, MemoryLockProvider

DISTRIBUTION = "angos-memory"


@hookimpl
def angos_lock_providers() -> list[BackendSpec[Any]]:
    return [
        BackendSpec(
            name="memory",
            factory=MemoryLockProvider,
            config_type=MemoryLockConfig,
            distribution=DISTRIBUTION,
            description="locks within this process (single instance only)",
        )
    ]


@hookimpl
def angos_caches() -> list[BackendSpec[Any]]:
    return [
        BackendSpec(
            name="memory",
            factory=MemoryCache,
            config_type=MemoryCacheConfig,
            distribution=DISTRIBUTION,
            description="bounded LRU with per-entry ttl, within this process",
        )
    ]
