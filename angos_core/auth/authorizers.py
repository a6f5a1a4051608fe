"""The configured authorizers as one decision (see :mod:`angos_core.authorization`).

:class:`WrappedAuthorizer` is the authorizer kind's core wrapper (``ExtensionKind.wrapper``):
whatever an authorizer raises becomes a denial (fail closed), logged by the authorizer's
name and the exception's type only (a message might quote a URL or a header), and every
call is timed through the observer, as the storage wrappers time theirs.
:class:`Authorizers` builds, opens and closes them and asks each in file order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from angos_core.authorization import Authorizer, AuthorizerDecision

if TYPE_CHECKING:
    from angos_core.config import BackendChoice
    from angos_core.identity import Identity
    from angos_core.policy.actions import PolicyRequest
    from angos_core.registry.wrappers import Observer

log = logging.getLogger("angos.auth")

KIND = "authorizer"
_ALLOWED = AuthorizerDecision(True, "allowed: no authorizer is configured")


class WrappedAuthorizer:
    """One authorizer as core asks it: fail closed, timed."""

    def __init__(self, inner: Authorizer, observer: Observer | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._observer = observer

    async def authorize(
        self, identity: Identity | None, client_ip: str, request: PolicyRequest
    ) -> AuthorizerDecision:
        started = time.perf_counter()
        error: str | None = None
        try:
            decision = await self.inner.authorize(identity, client_ip, request)
            if not isinstance(decision, AuthorizerDecision):
                error = "InvalidDecision"
                decision = AuthorizerDecision(
                    False,
                    f"authorizer {self.name} returned a {type(decision).__name__}, not an "
                    "AuthorizerDecision (fail closed)",
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = type(exc).__name__
            decision = AuthorizerDecision(
                False, f"authorizer {self.name} failed with {error} (fail closed)"
            )
        if error is not None:
            log.warning("%s", decision.reason)
        if self._observer is not None:
            self._observer(KIND, self.name, "authorize", time.perf_counter() - started, error)
        return decision

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Authorizers:
    """Every configured authorizer, wrapped; :meth:`decide` asks each in turn."""

    def __init__(self, authorizers: Iterable[WrappedAuthorizer] = ()) -> None:
        self.authorizers: tuple[WrappedAuthorizer, ...] = tuple(authorizers)

    @classmethod
    def from_config(
        cls, choices: Sequence[BackendChoice], observer: Observer | None = None
    ) -> Authorizers:
        """Build (each checked against the protocol) and wrap the config's authorizers."""
        return cls(c.kind.wrap(c.build(), observer) for c in choices)

    def __bool__(self) -> bool:
        return bool(self.authorizers)

    def names(self) -> list[str]:
        return [a.name for a in self.authorizers]

    async def open(self) -> None:
        """Open each in turn; if one fails, those already open are closed and it propagates."""
        opened: list[WrappedAuthorizer] = []
        try:
            for authorizer in self.authorizers:
                await authorizer.open()
                opened.append(authorizer)
        except BaseException:
            await _close_all(opened)
            raise

    async def aclose(self) -> None:
        await _close_all(self.authorizers)

    async def decide(
        self, identity: Identity | None, client_ip: str, request: PolicyRequest
    ) -> AuthorizerDecision:
        """The first denial, or an allowance once every authorizer allowed."""
        decision = _ALLOWED
        for authorizer in self.authorizers:
            decision = await authorizer.authorize(identity, client_ip, request)
            if not decision.allowed:
                return decision
        return decision


async def _close_all(authorizers: Sequence[WrappedAuthorizer]) -> None:
    results = await asyncio.gather(*(a.aclose() for a in authorizers), return_exceptions=True)
    for authorizer, result in zip(authorizers, results, strict=True):
        if isinstance(result, Exception):
            log.warning("authorizer %s failed to close: %s", authorizer.name, type(result).__name__)
