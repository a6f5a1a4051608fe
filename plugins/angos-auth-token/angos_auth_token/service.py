"""The registry's own token service: ``[auth.token_service]``.

Mints Docker registry tokens (JWT, HS256 with ``secret_key``) for callers another
authenticator accepted, and, as the authenticator ``token_service`` (chain position
``ORDER_REGISTRY_TOKEN``), accepts them back as ``Authorization: Bearer``.

A token's JOSE header declares its type (``typ``), as RFC 8725 advises and Angos in Rust
does: that, or this service's ``iss``, is what makes a JWT "ours". One of ours that does
not verify (expired, another secret, ``alg: none``, a refresh token presented as an access
token) is refused at once (401); any other JWT is not ours (None), so OIDC and external
token issuers get to look at it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from angos_auth_token.claims import (
    AccessClaimInvalid,
    decode_options,
    format_access,
    lifetime_problem,
    parse_access,
    peek,
)
from angos_auth_token.config import TokenServiceConfig, decode_secret
from angos_core.auth.directory import IdentityExists
from angos_core.auth.issuer import bearer_challenge
from angos_core.auth.tokens import IssuedToken
from angos_core.errors import AuthenticationFailed
from angos_core.identity import ANONYMOUS, ORDER_REGISTRY_TOKEN, Access, Credentials, Identity

ALGORITHM = "HS256"
#: The ``typ`` of an access token and of a refresh token: never interchangeable.
ACCESS_TYPE = "angos+jwt"
REFRESH_TYPE = "angos-refresh+jwt"
#: The ``iss`` of every token this service mints.
ISSUER = "angos-token-service"
#: Clock skew tolerated between replicas (nbf, exp), as Distribution's ``Leeway``.
LEEWAY_SECS = 60
#: Verified access tokens remembered, and for how long at most (never past their ``exp``):
#: a client sends one token with every request of a pull or push, and PyJWT's checks of it
#: cost more than serving a manifest (bench/auth: 0.4x anonymous without this).
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_SECS = 60.0


def _json_safe(claims: Any) -> dict[str, Any]:
    # The minting identity's claims ride in the token so a policy decides a token's caller
    # as it decided the caller itself; what JSON cannot carry is left out, not stringified.
    try:
        safe: dict[str, Any] = json.loads(json.dumps(dict(claims)))
    except (TypeError, ValueError):
        return {}
    return safe


class TokenService:
    """Mints and verifies this registry's tokens; an ``Authenticator`` and a token issuer."""

    order = ORDER_REGISTRY_TOKEN

    def __init__(
        self,
        config: TokenServiceConfig,
        *,
        name: str = "token_service",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.realm = config.realm
        self.service = config.service
        self.ttl_secs = config.ttl_secs
        self.refresh_ttl_secs = config.refresh_ttl_secs
        self._key = decode_secret(config.secret_key)
        self._clock = clock
        # Whether the identity a token was minted for is still configured (core's chain
        # sets it: angos_core.auth.directory); None: every identity is.
        self._exists: IdentityExists | None = None
        # SHA-256 of a token -> its identity, the provider it was minted for, and the clock
        # readings it is trusted between. A reload builds a new service (the key may
        # change), so within one service a verified token stays valid.
        self._verified: OrderedDict[bytes, tuple[Identity, str, float, float]] = OrderedDict()
        # SHA-256 of tokens that are not ours (an OIDC job's, sent with every request):
        # that follows from the token alone, so it is remembered as long as there is room.
        self._foreign: OrderedDict[bytes, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"TokenService(name={self.name!r}, service={self.service!r})"

    # ------------------------------------------------------------------ TokenIssuer

    def challenge(self, needed: Sequence[Access]) -> str:
        """The Bearer challenge (``realm`` empty: core puts in the request's own
        ``<scheme>://<host>/token`` before asking)."""
        return bearer_challenge(self.realm, self.service, needed)

    def check_minted_for(self, exists: IdentityExists) -> None:
        """Refuse tokens minted for an identity or provider the chain no longer has."""
        self._exists = exists

    def _check_still_exists(self, minted_for: str, identity_id: str, what: str) -> None:
        # A token minted from one of ours (a refresh grant) names this service: its refresh
        # token was checked when redeemed.
        if self._exists is None or minted_for in ("", self.name):
            return
        if not self._exists(minted_for, identity_id):
            raise AuthenticationFailed(
                self.name, f"the {what} was minted for an identity that is no longer configured"
            )

    # ------------------------------------------------------------------ minting

    def issue(
        self, identity: Identity, access: Sequence[Access], *, refresh: bool = False
    ) -> IssuedToken:
        """A token for ``identity`` granting ``access`` (already decided by core), and with
        ``refresh`` a refresh token standing for ``identity`` itself."""
        now = int(self._clock())
        token = self._sign(
            ACCESS_TYPE,
            identity,
            now,
            self.ttl_secs,
            {"access": format_access(access)},
        )
        refresh_token = None
        if refresh and self.refresh_ttl_secs and identity is not ANONYMOUS:
            extra = {} if identity.access is None else {"limit": format_access(identity.access)}
            refresh_token = self._sign(REFRESH_TYPE, identity, now, self.refresh_ttl_secs, extra)
        return IssuedToken(token, self.ttl_secs, now, refresh_token)

    def _sign(self, typ: str, identity: Identity, now: int, ttl: int, extra: dict[str, Any]) -> str:
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "sub": identity.id,
            "aud": self.service,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            # Who it was minted for; the certificate is left out on purpose: a token must
            # not turn a certificate-bound identity into a replayable credential.
            "angos": {
                "username": identity.username,
                "provider": identity.provider,
                "method": identity.method,
                "claims": _json_safe(identity.claims),
            },
            **extra,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"typ": typ})

    def redeem(self, refresh_token: str) -> Identity:
        """The identity a refresh token stands for (``grant_type=refresh_token``): unlimited
        unless the identity it was minted from was itself limited. Raises
        ``AuthenticationFailed``."""
        payload = self._verify(refresh_token, REFRESH_TYPE, "refresh token")
        self._check_still_exists(_minted_for(payload), payload["sub"], "refresh token")
        limit = self._grants(payload.get("limit"), "refresh token") if "limit" in payload else None
        return self._identity(payload, "refresh_token", limit)

    # ------------------------------------------------------------------ Authenticator

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        token = credentials.bearer
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._verified.get(digest)
        if hit is not None:
            identity, minted_for, since, until = hit
            if since <= self._clock() < until:
                self._verified.move_to_end(digest)
                self._check_still_exists(minted_for, identity.id, "token")
                return identity
            del self._verified[digest]
        if digest in self._foreign:
            self._foreign.move_to_end(digest)
            return None
        if not self.is_ours(token):
            self._foreign[digest] = None
            if len(self._foreign) > VERIFIED_CACHE_SIZE:
                self._foreign.popitem(last=False)
            return None
        payload = self._verify(token, ACCESS_TYPE, "token")
        minted_for = _minted_for(payload)
        self._check_still_exists(minted_for, payload["sub"], "token")
        identity = self._identity(payload, "token", self._grants(payload.get("access"), "token"))
        # _verify accepts it from nbf - leeway to exp + leeway: trusted within, 60 s at most.
        now = self._clock()
        nbf = payload.get("nbf")
        since = float(nbf) - LEEWAY_SECS if isinstance(nbf, int | float) else now
        until = min(now + VERIFIED_CACHE_SECS, float(payload["exp"]) + LEEWAY_SECS)
        self._verified[digest] = (identity, minted_for, since, until)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    def is_ours(self, token: str) -> bool:
        """Whether ``token`` claims to come from this service (its ``typ`` or ``iss``;
        unverified: the signature decides after)."""
        unverified = peek(token)
        if unverified is None:
            return False
        header, payload = unverified
        return header.get("typ") in (ACCESS_TYPE, REFRESH_TYPE) or payload.get("iss") == ISSUER

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------------ verification

    def _verify(self, token: str, typ: str, what: str) -> dict[str, Any]:
        try:
            # One parse for header and claims (PyJWT's segment checks are its main cost).
            decoded = jwt.decode_complete(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=ISSUER,
                options=decode_options("iss", "sub", "aud", "exp", "nbf", "iat"),
            )
            header: dict[str, Any] = decoded["header"]
            payload: dict[str, Any] = decoded["payload"]
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed(
                self.name, f"the {what} was issued for another service"
            ) from None
        except jwt.PyJWTError:
            # Another secret, a bad signature, alg none, a missing claim: one answer, so a
            # forger learns nothing about which check failed.
            raise AuthenticationFailed(self.name, f"invalid {what}") from None
        if header.get("typ") != typ:
            raise AuthenticationFailed(self.name, f"invalid {what}")
        problem = lifetime_problem(payload, self._clock(), LEEWAY_SECS)
        if problem:
            raise AuthenticationFailed(self.name, f"the {what} {problem}")
        if not isinstance(payload.get("sub"), str):
            raise AuthenticationFailed(self.name, f"invalid {what}")
        return payload

    def _grants(self, value: Any, what: str) -> tuple[Access, ...]:
        try:
            return parse_access(value)
        except AccessClaimInvalid:
            raise AuthenticationFailed(self.name, f"invalid {what}") from None

    def _identity(
        self, payload: dict[str, Any], method: str, access: tuple[Access, ...] | None
    ) -> Identity:
        minted_for = payload.get("angos")
        minted_for = minted_for if isinstance(minted_for, dict) else {}
        if payload["sub"] == ANONYMOUS.id and minted_for.get("method") == ANONYMOUS.method:
            # Minted for a caller with no credentials: the request stays anonymous (its
            # access claim grants nothing the policy does not give anonymous callers).
            return ANONYMOUS
        username = minted_for.get("username")
        claims = minted_for.get("claims")
        return Identity(
            id=payload["sub"],
            username=username if isinstance(username, str) else payload["sub"],
            provider=self.name,
            method=method,
            claims=claims if isinstance(claims, dict) else {},
            access=access,
        )


def _minted_for(payload: dict[str, Any]) -> str:
    """The provider of the identity a verified token was minted for ("" if it names none)."""
    minted_for = payload.get("angos")
    provider = minted_for.get("provider") if isinstance(minted_for, dict) else None
    return provider if isinstance(provider, str) else ""
