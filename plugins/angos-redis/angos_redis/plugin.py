"""The ``angos`` entry point of the distribution angos-redis."""

from __future__ import annotations

from angos_core import CAP_SHARED, BackendSpec, Cache, LockProvider, hookimpl
from angos_redis.config import RedisCacheConfig, RedisLockConfig

DISTRIBUTION = "angos-redis"

# The backends are imported when a config selects them: redis-py costs about 6 MiB in every
# process that merely has this plugin installed.


def _lock_provider(config: RedisLockConfig) -> LockProvider:
    from angos_redis.lock import RedisLockProvider

    return RedisLockProvider(config)


def _cache(config: RedisCacheConfig) -> Cache:
    from angos_redis.cache import RedisCache

    return RedisCache(config)


@hookimpl
def angos_lock_providers() -> list[BackendSpec[LockProvider]]:
    return [
        BackendSpec(
            name="redis",
            factory=_lock_provider,
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
            factory=_cache,
            config_type=RedisCacheConfig,
            capabilities=frozenset({CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="a cache shared by every replica through one Redis",
        )
    ]
