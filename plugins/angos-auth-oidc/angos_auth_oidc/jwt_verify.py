"""Verifying a JWT against a JWKS, independent of where either came from.

Pure functions over PyJWT, kept apart from the OIDC authenticator so that any verifier of
issuer-signed JWTs (the external token issuers of Distribution's ``auth.token``) can reuse
them: :func:`peek` routes a token to its issuer before anything is trusted, :class:`KeySet`
holds one JWKS document, :func:`verify` checks signature, algorithm, time, issuer, audience
and required claims, and raises :class:`TokenRejected` with a reason a client may read: it
names what failed, never the token or any of its content.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

log = logging.getLogger("angos.auth.jwt")


class TokenRejected(Exception):
    """The token is not acceptable. ``reason`` is safe to send to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A compact JWS's header and claims, read without any check: for routing only."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    @property
    def issuer(self) -> str | None:
        iss = self.claims.get("iss")
        return iss if isinstance(iss, str) else None

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def alg(self) -> str | None:
        alg = self.header.get("alg")
        return alg if isinstance(alg, str) else None


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def peek(token: str) -> UnverifiedToken | None:
    """The token's header and claims unverified, or None if it is not a compact JWS whose
    header and payload are JSON objects (an opaque token, a password).

    Parsed here rather than by PyJWT, whose strict segment checks cost more than the
    signature: :func:`verify` checks the token fully, once."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = _segment(parts[0]), _segment(parts[1])
    except (ValueError, binascii.Error):  # JSON, base64 and UTF-8 errors are ValueErrors
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return UnverifiedToken(header=header, claims=claims)


class KeySet:
    """The signing keys of one JWKS document (RFC 7517), by ``kid``.

    Keys that cannot verify signatures (``use: enc``, an unknown ``kty`` or curve, broken
    parameters) are left out with a warning: one bad key must not take the others down.
    """

    def __init__(self, keys: Iterable[Mapping[str, Any]], source: str = "JWKS") -> None:
        self.keys: list[dict[str, Any]] = []
        self._built: dict[tuple[int, str], jwt.PyJWK] = {}
        for index, key in enumerate(keys):
            if not isinstance(key, Mapping):
                log.warning("%s: key %d is not a JSON object; ignored", source, index)
                continue
            if key.get("use", "sig") != "sig":
                continue
            try:
                jwt.PyJWK(dict(key))
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                log.warning("%s: key %r unusable (%s); ignored", source, key.get("kid"), exc)
                continue
            self.keys.append(dict(key))

    @classmethod
    def from_document(cls, document: Any, source: str = "JWKS") -> KeySet:
        """A key set from a parsed JWKS document; ``ValueError`` if it is not one."""
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ValueError('not a JWKS document (a JSON object with a "keys" list)')
        return cls(document["keys"], source)

    def document(self) -> dict[str, Any]:
        return {"keys": self.keys}

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(k["kid"] for k in self.keys if isinstance(k.get("kid"), str))

    def has(self, kid: str | None) -> bool:
        """Whether a token with this ``kid`` header would find a key (no ``kid``: the set
        holds exactly one key)."""
        return kid in self.kids if kid is not None else len(self.keys) == 1

    def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key to verify a token of ``kid`` signed with ``alg``."""
        if kid is None:
            if len(self.keys) != 1:
                raise TokenRejected("token names no signing key (kid) and the issuer has several")
            index = 0
        else:
            matches = [i for i, k in enumerate(self.keys) if k.get("kid") == kid]
            if not matches:
                raise TokenRejected("token signed with a key the issuer does not publish")
            index = matches[0]
        key = self.keys[index]
        if key.get("alg") not in (None, alg):
            raise TokenRejected("token signed with an algorithm its key is not for")
        built = self._built.get((index, alg))
        if built is None:
            try:
                built = jwt.PyJWK(key, algorithm=alg)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                raise TokenRejected("token signed with an algorithm its key is not for") from None
            self._built[(index, alg)] = built
        return built


def check_algorithm(token: UnverifiedToken, algorithms: Sequence[str]) -> str:
    """The token's ``alg`` if allowed. Checked before any key is looked up, so ``none`` and
    ``HS*`` (a public key used as an HMAC secret) never reach a verifier."""
    alg = token.alg
    if alg is None or alg not in algorithms:
        raise TokenRejected(
            f"token signing algorithm not allowed (allowed: {', '.join(algorithms)})"
        )
    return alg


def verify(
    token: str,
    keys: KeySet,
    *,
    unverified: UnverifiedToken,
    algorithms: Sequence[str],
    issuer: str,
    audiences: Sequence[str] | None,
    leeway: float,
    required_claims: Sequence[str] = (),
) -> dict[str, Any]:
    """The verified claims of ``token``: signed by a key of ``keys`` with an allowed
    algorithm, not expired, already valid, issued by ``issuer``, for one of ``audiences``
    (any if None), and carrying ``exp``, ``iss``, ``sub`` and every ``required_claims``."""
    alg = check_algorithm(unverified, algorithms)
    key = keys.key_for(unverified.kid, alg)
    require = list(dict.fromkeys(["exp", "iss", "sub", *required_claims]))
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=list(audiences) if audiences is not None else None,
            issuer=issuer,
            leeway=leeway,
            options={"require": require, "verify_aud": audiences is not None},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("token expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected("token audience not accepted") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("token issuer not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidSignatureError:
        raise TokenRejected("token signature invalid") from None
    except jwt.InvalidTokenError:
        # Malformed claims (a non-numeric exp, a non-string sub): the library's message may
        # quote them, so it is not passed on.
        raise TokenRejected("token malformed") from None
    for name in required_claims:
        if claims.get(name) in (None, ""):
            raise TokenRejected(f"token lacks the required claim {name!r}")
    return claims
