"""Fixtures of the OIDC plugin's tests: authenticators over the local test issuer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from angos_auth_oidc import OidcAuthenticator, OidcConfig
from angos_memory.cache import MemoryCache, MemoryCacheConfig

from angos_core.protocols import Cache
from angos_core.testing.oidc_issuer import OidcIssuer

MakeAuthenticator = Callable[..., Awaitable[OidcAuthenticator]]


@pytest.fixture
async def make_authenticator(
    oidc_issuer: OidcIssuer,
) -> AsyncIterator[MakeAuthenticator]:
    """``make(entry="ci", cache=None, open=True, **settings)``: an authenticator with one entry
    trusting the test issuer (audience ``angos``, RS256 and ES256), closed at teardown."""
    made: list[OidcAuthenticator] = []

    async def make(
        entry: str = "ci", cache: Cache | None = None, open: bool = True, **settings: Any
    ) -> OidcAuthenticator:
        values: dict[str, Any] = {
            "issuer": oidc_issuer.issuer,
            "required_audience": "angos",
            "allowed_algorithms": ["RS256", "ES256"],
            **settings,
        }
        authenticator = OidcAuthenticator({entry: OidcConfig(**values)})
        if cache is not None:
            authenticator.use_cache(cache)
        made.append(authenticator)
        if open:
            await authenticator.open()
        return authenticator

    yield make
    for authenticator in made:
        await authenticator.aclose()


@pytest.fixture
async def shared_cache() -> AsyncIterator[Cache]:
    """One cache standing for the registry's shared one."""
    cache = MemoryCache(MemoryCacheConfig())
    await cache.open()
    yield cache
    await cache.aclose()
