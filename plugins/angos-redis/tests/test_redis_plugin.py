"""The distribution is found through its entry point and configured from TOML."""

from __future__ import annotations

import pytest
from angos_redis import RedisCache, RedisCacheConfig, RedisLockConfig, RedisLockProvider

from angos_core.errors import BackendUnavailable, ConfigError
from angos_core.plugins import load_catalogue
from angos_core.testing.redis_server import RedisServer


def test_entry_point_provides_lock_provider_and_cache() -> None:
    catalogue = load_catalogue()
    lock = catalogue.get("lock_provider", "redis")
    cache = catalogue.get("cache", "redis")
    assert lock.distribution == cache.distribution == "angos-redis"
    assert isinstance(lock.factory(RedisLockConfig(url="redis://127.0.0.1:1")), RedisLockProvider)
    assert isinstance(cache.factory(RedisCacheConfig(url="redis://127.0.0.1:1")), RedisCache)


def test_documented_defaults() -> None:
    config = RedisLockConfig(url="redis://redis:6379")
    assert (config.ttl, config.key_prefix, config.max_retries, config.retry_delay_ms) == (
        10.0,
        "registry-locks",
        100,
        10,
    )
    assert RedisCacheConfig(url="redis://redis:6379").key_prefix == "cache"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://redis:6379"}, "url must start with"),
        ({"url": "redis://r", "ttl": 0}, "ttl must be a positive"),
        ({"url": "redis://r", "max_retries": -1}, "max_retries cannot be negative"),
        ({"url": "redis://r", "retry_delay_ms": -5}, "retry_delay_ms cannot be negative"),
    ],
)
def test_bad_lock_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisLockConfig(**settings)  # type: ignore[arg-type]


def test_config_table_errors_name_the_key() -> None:
    from angos_core.config import parse_table

    with pytest.raises(ConfigError) as excinfo:
        parse_table(RedisLockConfig, {"url": "redis://r", "ttl_secs": 3}, "metadata_store.fs.redis")
    assert excinfo.value.key == "metadata_store.fs.redis.ttl_secs"
    with pytest.raises(ConfigError) as excinfo:
        parse_table(RedisCacheConfig, {}, "cache.redis")
    assert excinfo.value.key == "cache.redis.url"


async def test_open_fails_naming_redis_when_it_cannot_be_reached(
    redis_server: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.down():
        for backend in (
            RedisLockProvider(RedisLockConfig(url=url)),
            RedisCache(RedisCacheConfig(url=url)),
        ):
            with pytest.raises(BackendUnavailable, match="PING at startup") as excinfo:
                await backend.open()
            assert excinfo.value.backend == "redis"
            await backend.aclose()
