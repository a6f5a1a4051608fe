"""A token issuer that mints: the registry's own token service, behind ``GET /token`` and
``POST /token`` (:mod:`angos_core.http.token_handlers`).

An external token server Angos trusts is a :class:`~angos_core.auth.issuer.TokenIssuer`
only (the challenge points at it); an authenticator that also satisfies
:class:`TokenMinter` makes core serve the token endpoint itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from angos_core.auth.issuer import TokenIssuer
from angos_core.identity import Access, Identity

#: Where core serves the token endpoint; a configured realm ends with it.
TOKEN_PATH = "/token"

#: The asymmetric JWS algorithms a key of another issuer (an OIDC provider's JWKS, an
#: external token server's certificate) may verify. ``none`` (unsigned) and the HMAC ``HS*``
#: (a shared secret: with an issuer's public key as the "secret", anyone could sign) are
#: never accepted from another issuer.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


@dataclass(frozen=True)
class IssuedToken:
    """An access token, its lifetime, when it was issued (Unix seconds), and a refresh token
    when one was asked for and the minter issues them. Never logged (``repr`` leaves the
    tokens out)."""

    token: str = field(repr=False)
    expires_in: int
    issued_at: int
    refresh_token: str | None = field(default=None, repr=False)


@runtime_checkable
class TokenMinter(TokenIssuer, Protocol):
    """Mints tokens for identities the chain accepted."""

    def issue(
        self, identity: Identity, access: Sequence[Access], *, refresh: bool = False
    ) -> IssuedToken:
        """A token for ``identity`` granting exactly ``access`` (core decided it: see
        :func:`angos_core.auth.grants.token_grants`); with ``refresh`` also a refresh
        token standing for ``identity``. ``identity`` may be
        :data:`~angos_core.identity.ANONYMOUS` (a caller with no credentials, never with
        ``refresh``): the token's ``authenticate`` must answer ``ANONYMOUS`` again."""

    def redeem(self, refresh_token: str) -> Identity:
        """The identity a refresh token stands for. Raises ``AuthenticationFailed``."""
