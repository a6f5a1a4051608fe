"""The ``angos`` entry point of the distribution angos-redis."""

from __future__ import annotations

from angos_core import CAP_SHARED, BackendSpec, Cache, LockProvider, hookimpl
from angos_redis.cache import RedisCache
from angos_redis.config import RedisCacheConfig, RedisLockConfig
from angos_redis.lock import RedisLockProvider

DISTRIBUTION = "angos-redis"


@hookimpl
def angos_lock_providers() -> list[BackendSpec[LockProvider]]:
    return [
        BackendSpec(
            name="redis",
            factory=RedisLockProvider,
            config_type=RedisLockConfig,
            capabilities=frozenset({CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="locks shared by every replica through one Redis",
        )
    ]


@hookimpl
def angos_caches() -> list[BackendSpec[Cache]]:
    return [
        BackendSpec(
            name="redis",
            factory=RedisCache,
            config_type=RedisCacheConfig,
            capabilities=frozenset({CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="a cache shared by every replica through one Redis",
        )
    ]
