"""The authenticator chain: one request's credentials through every configured
authenticator, applying the result rule of :mod:`angos_core.identity` exactly.

Authenticators run in the order of their ``order`` (mTLS, registry token, OIDC and external
tokens, Basic), file order among equals. The first :class:`Identity` decides;
``AuthenticationFailed`` ends the chain (401); ``IdentityProviderUnavailable`` ends it too
(503: a provider that cannot decide never lets a request through as anyone, nor as
anonymous); ``None`` asks the next. No credentials at all: anonymous, no authenticator is
asked; :data:`~angos_core.identity.ANONYMOUS` (an anonymous token): anonymous as well,
not a failure. Credentials no authenticator recognizes: anonymous too, but they count as a failure
for the failure limit (guessing usernames is guessing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from angos_core.auth.config import AuthConfig, FailureLimitConfig
from angos_core.auth.directory import MintedFor, identity_exists
from angos_core.auth.failure_limit import FailureLimiter
from angos_core.auth.issuer import TokenIssuer
from angos_core.errors import AuthenticationFailed, IdentityProviderUnavailable, TooManyRequests
from angos_core.identity import ANONYMOUS, Authenticator, Credentials, Identity
from angos_core.protocols import Cache

log = logging.getLogger("angos.auth")

#: ``observe(method, result)``: one authentication attempt. ``method`` is the credential
#: presented (``basic``, ``bearer``, ``mtls``); ``result`` one of :data:`RESULTS`.
AttemptObserver = Callable[[str, str], None]
RESULTS = ("success", "anonymous", "failure", "unrecognized", "unavailable", "limited")


@runtime_checkable
class CacheUser(Protocol):
    """Optional, beside :class:`~angos_core.identity.Authenticator`: an authenticator with
    ``use_cache`` gets the registry's configured cache (shared across replicas when the
    cache is) before ``open``, e.g. to share fetched JWKS."""

    def use_cache(self, cache: Cache) -> None: ...


def credential_method(credentials: Credentials) -> str:
    """The credential a request presents, for metrics: Bearer, then Basic, then mTLS."""
    if credentials.bearer is not None:
        return "bearer"
    if credentials.basic is not None:
        return "basic"
    return "mtls"


class AuthChain:
    """The configured authenticators as one ``authenticate`` call."""

    def __init__(
        self,
        authenticators: Iterable[Authenticator],
        failure_limit: FailureLimitConfig | None = None,
        observe: AttemptObserver | None = None,
    ) -> None:
        # sorted() is stable: equal orders keep the config's order.
        self.authenticators: tuple[Authenticator, ...] = tuple(
            sorted(authenticators, key=lambda a: a.order)
        )
        exists = identity_exists(self.authenticators)
        for authenticator in self.authenticators:
            if isinstance(authenticator, MintedFor):
                authenticator.check_minted_for(exists)
        self.limiter = FailureLimiter(failure_limit or FailureLimitConfig())
        self._observe = observe
        issuers = [a for a in self.authenticators if isinstance(a, TokenIssuer)]
        #: Where the Bearer challenge points (None: the Basic challenge).
        self.issuer: TokenIssuer | None = issuers[0] if issuers else None

    @classmethod
    def from_config(cls, config: AuthConfig, observe: AttemptObserver | None = None) -> AuthChain:
        return cls([c.build() for c in config.authenticators], config.failure_limit, observe)

    def names(self) -> list[str]:
        return [a.name for a in self.authenticators]

    # ------------------------------------------------------------------ lifecycle

    async def open(self, cache: Cache | None = None) -> None:
        """Open every authenticator (giving ``cache`` to each :class:`CacheUser` first). One
        whose provider is unreachable is logged and kept: its requests get 503 until it
        recovers. A ``ConfigError`` propagates (startup fails) after the ones already opened
        are closed."""
        opened: list[Authenticator] = []
        try:
            for authenticator in self.authenticators:
                if cache is not None and isinstance(authenticator, CacheUser):
                    authenticator.use_cache(cache)
                try:
                    await authenticator.open()
                except IdentityProviderUnavailable as exc:
                    log.warning(
                        "authenticator %s unavailable at startup (requests it would decide "
                        "get 503 until it recovers): %s",
                        authenticator.name,
                        exc,
                    )
                opened.append(authenticator)
        except BaseException:
            await _close_all(opened)
            raise

    async def health(self) -> None:
        """Raise the first authenticator's ``IdentityProviderUnavailable``."""
        for authenticator in self.authenticators:
            await authenticator.health()

    async def aclose(self) -> None:
        await _close_all(self.authenticators)

    # ------------------------------------------------------------------ requests

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        """The caller's identity, or None (anonymous).

        Raises ``AuthenticationFailed`` (401), ``IdentityProviderUnavailable`` (503) and
        ``TooManyRequests`` (429: this address and username failed too often).
        """
        if not credentials.presented:
            return None
        method = credential_method(credentials)
        username = credentials.basic[0] if credentials.basic is not None else ""
        key = self.limiter.key(credentials.client_ip, username)
        retry_after = self.limiter.retry_after(key)
        if retry_after is not None:
            self._count(method, "limited")
            raise TooManyRequests(
                "too many failed authentications from this address for this user; retry "
                f"in {retry_after}s",
                retry_after_secs=retry_after,
            )
        for authenticator in self.authenticators:
            try:
                identity = await authenticator.authenticate(credentials)
            except AuthenticationFailed:
                self.limiter.failed(key)
                self._count(method, "failure")
                raise
            except IdentityProviderUnavailable:
                self._count(method, "unavailable")
                raise
            if identity is ANONYMOUS:
                self._count(method, "anonymous")
                return None
            if identity is not None:
                self.limiter.succeeded(key)
                self._count(method, "success")
                return identity
        if credentials.basic is not None or credentials.bearer is not None:
            self.limiter.failed(key)
        self._count(method, "unrecognized")
        return None

    def _count(self, method: str, result: str) -> None:
        if self._observe is not None:
            self._observe(method, result)


async def _close_all(authenticators: Sequence[Authenticator]) -> None:
    results = await asyncio.gather(*(a.aclose() for a in authenticators), return_exceptions=True)
    for authenticator, result in zip(authenticators, results, strict=True):
        if isinstance(result, Exception):
            log.warning("authenticator %s failed to close: %r", authenticator.name, result)
