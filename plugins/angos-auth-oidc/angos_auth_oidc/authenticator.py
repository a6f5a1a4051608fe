"""The ``oidc`` authenticator: JWTs of trusted OIDC issuers, one ``[auth.oidc.<entry>]`` each.

A token is accepted as ``Authorization: Bearer <jwt>``, or as Basic with the entry's name as
username and the JWT as password (``docker login -u github-actions -p "$TOKEN"``; a
Kubernetes pull secret). Result rule (:mod:`angos_core.identity`):

- Bearer: a JWT whose ``iss`` is no entry's issuer, or no JWT at all, is not ours (None);
  one claiming an entry's issuer and failing verification is ``AuthenticationFailed``;
- Basic with an entry's name: the password must be a valid token of that entry's issuer
  (anything else is ``AuthenticationFailed``); another username is not ours;
- an issuer whose keys could never be fetched: ``IdentityProviderUnavailable`` (503).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from angos_auth_oidc.config import OidcConfig
from angos_auth_oidc.jwks import JwksSource
from angos_auth_oidc.jwt_verify import (
    KeySet,
    TokenRejected,
    UnverifiedToken,
    check_algorithm,
    peek,
    verify,
)
from angos_core.errors import AuthenticationFailed, IdentityProviderUnavailable
from angos_core.identity import ORDER_EXTERNAL_TOKEN, Credentials, Identity
from angos_core.protocols import Cache

log = logging.getLogger("angos.auth.oidc")


#: Verified tokens remembered per entry, and for how long at most: docker sends the same
#: token with every request of a push, and PyJWT's checks cost far more than a lookup.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_SECS = 60.0


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: Identity
    keys: KeySet  # the key set that verified it: a new one (a rotation) verifies again
    until: float  # monotonic


class OidcEntry:
    """One configured issuer: verifies its tokens into identities."""

    def __init__(
        self, entry: str, config: OidcConfig, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.entry = entry
        self.name = f"oidc.{entry}"
        self.config = config
        self.source = JwksSource(self.name, config)
        self._mono = monotonic
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()

    def cached(self, digest: bytes) -> Identity | None:
        """The identity of the token of SHA-256 ``digest`` if this entry verified it lately,
        with the keys in hand, and it has not expired since."""
        hit = self._verified.get(digest)
        if hit is None or hit.keys is not self.source.keys or self._mono() >= hit.until:
            return None
        self._verified.move_to_end(digest)
        self.source.refresh_if_due()
        return hit.identity

    async def authenticate(
        self, token: str, unverified: UnverifiedToken, digest: bytes
    ) -> Identity:
        identity, keys = await self._verify(token, unverified)
        remaining = float(identity.claims["exp"]) - time.time() + self.config.clock_skew_tolerance
        self._verified[digest] = _Verified(
            identity, keys, self._mono() + min(VERIFIED_CACHE_SECS, remaining)
        )
        self._verified.move_to_end(digest)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    async def _verify(self, token: str, unverified: UnverifiedToken) -> tuple[Identity, KeySet]:
        try:
            if unverified.issuer != self.config.issuer:
                raise TokenRejected(f"token not issued by the issuer of {self.name}")
            # Before any key lookup: an `alg: none` or HS256 token costs no JWKS fetch.
            check_algorithm(unverified, self.config.allowed_algorithms)
            keys = await self.source.keys_for(unverified.kid)
            claims = verify(
                token,
                keys,
                unverified=unverified,
                algorithms=self.config.allowed_algorithms,
                issuer=self.config.issuer,
                audiences=self.config.audiences,
                leeway=self.config.clock_skew_tolerance,
                required_claims=self.config.required_claims,
            )
        except TokenRejected as exc:
            log.info("%s: token rejected: %s", self.name, exc.reason)
            raise AuthenticationFailed(self.name, exc.reason) from None
        username = claims.get(self.config.username_claim)
        if not isinstance(username, str) or not username:
            reason = f"token lacks the username claim {self.config.username_claim!r}"
            log.info("%s: token rejected: %s", self.name, reason)
            raise AuthenticationFailed(self.name, reason)
        identity = Identity(
            id=claims["sub"],
            username=username,
            provider=self.name,
            method="oidc",
            claims=claims,
        )
        return identity, keys


class OidcAuthenticator:
    """Every ``[auth.oidc.<entry>]`` as one authenticator of the chain."""

    name = "oidc"
    order = ORDER_EXTERNAL_TOKEN

    def __init__(self, entries: Mapping[str, OidcConfig]) -> None:
        self.entries = [OidcEntry(entry, config) for entry, config in entries.items()]
        self._by_entry = {e.entry: e for e in self.entries}

    def use_cache(self, cache: Cache) -> None:
        """The registry's cache: fetched JWKS are shared through it with other replicas."""
        for entry in self.entries:
            entry.source.use_cache(cache)

    async def open(self) -> None:
        """Fetch every issuer's keys (from the cache when another replica has). An issuer
        that cannot be reached is reported after the others opened: its tokens get 503 until
        it answers, the other entries serve."""
        unavailable: list[IdentityProviderUnavailable] = []
        for entry in self.entries:
            try:
                await entry.source.open()
            except IdentityProviderUnavailable as exc:
                unavailable.append(exc)
            if entry.config.audiences is None:
                log.warning(
                    "%s: no required_audience: tokens this issuer minted for any service are "
                    "accepted; set required_audience to the audience your clients request",
                    entry.name,
                )
        if unavailable:
            first = unavailable[0]
            raise IdentityProviderUnavailable(
                first.authenticator, "; ".join(str(exc) for exc in unavailable)
            )

    def knows(self, provider: str, identity_id: str) -> bool:
        """Whether ``provider`` (``oidc.<entry>``) is still configured: the tokens the
        registry minted for its callers are revoked once it is not."""
        return provider.removeprefix("oidc.") in self._by_entry

    async def health(self) -> None:
        for entry in self.entries:
            await entry.source.ensure()

    async def aclose(self) -> None:
        for entry in self.entries:
            await entry.source.aclose()

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.basic is not None:
            username, password = credentials.basic
            addressed = self._by_entry.get(username)
            if addressed is None:
                return None
            digest = _digest(password)
            if (identity := addressed.cached(digest)) is not None:
                return identity
            unverified = peek(password)
            if unverified is None:
                raise AuthenticationFailed(
                    addressed.name, f"the password for {username!r} must be a JWT of its issuer"
                )
            return await addressed.authenticate(password, unverified, digest)
        if credentials.bearer is not None:
            token = credentials.bearer
            digest = _digest(token)
            for entry in self.entries:
                if (identity := entry.cached(digest)) is not None:
                    return identity
            unverified = peek(token)
            if unverified is None:
                return None
            candidates = [e for e in self.entries if e.config.issuer == unverified.issuer]
            if not candidates:
                return None
            # Several entries may trust one issuer (say, for different audiences): the first
            # that accepts the token decides; if none does, the first refusal is the answer.
            refusal: AuthenticationFailed | None = None
            for entry in candidates:
                try:
                    return await entry.authenticate(token, unverified, digest)
                except AuthenticationFailed as exc:
                    refusal = refusal or exc
            assert refusal is not None
            raise refusal
        return None


def _digest(token: str) -> bytes:
    # What the verified-token cache is keyed by: it holds no credential.
    return hashlib.sha256(token.encode()).digest()
