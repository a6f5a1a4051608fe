"""Trusted external token servers: ``[auth.token.<name>]`` (Distribution's ``auth.token``).

Angos verifies the Docker registry tokens an existing token server (docker_auth, Harbor's,
GitLab's, a Distribution deployment's) signs, so it can take Distribution's place behind
it. Keys, after Distribution's: ``realm`` (where the challenge sends clients), ``service``
(the ``aud`` a token must carry), ``issuer`` (its ``iss``), ``root_certificate_bundle``
(Distribution's ``rootcertbundle``) and/or ``jwks`` (a JWKS file, Distribution's ``jwks``),
``allowed_algorithms`` (Distribution's ``signingalgorithms``; the name Angos's OIDC uses).

One authenticator (``token``, chain position ``ORDER_EXTERNAL_TOKEN``) serves every entry
and picks the entry by the token's ``iss``: a JWT from no configured issuer is not its kind
(None, OIDC may know it); one from a configured issuer that does not verify is refused.
The first entry's realm and service are the challenge's.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from angos_auth_token.claims import (
    AccessClaimInvalid,
    decode_options,
    lifetime_problem,
    parse_access,
    peek,
)
from angos_auth_token.keys import (
    TrustedKeys,
    UntrustedKey,
    load_certificate_bundle,
    load_jwks_file,
)
from angos_auth_token.service import check_realm
from angos_core.auth.issuer import bearer_challenge
from angos_core.errors import AuthenticationFailed, ConfigError, ConfigErrors
from angos_core.identity import ORDER_EXTERNAL_TOKEN, Access, Credentials, Identity

log = logging.getLogger("angos.auth.token")

SECTION = "auth.token"
#: Public-key algorithms only: an HMAC algorithm would verify with the public key as the
#: secret (the classic confusion attack), and ``none`` verifies nothing.
ASYMMETRIC = (
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


@dataclass
class ExternalTokenConfig:
    """One ``[auth.token.<name>]`` entry."""

    #: The token server's URL clients are sent to (the challenge's ``realm``).
    realm: str
    #: The service its tokens name as ``aud`` (the challenge's ``service``).
    service: str
    #: The ``iss`` of its tokens.
    issuer: str
    #: PEM certificates whose keys sign tokens, or which issue the ``x5c`` chains tokens
    #: carry (Distribution's ``rootcertbundle``).
    root_certificate_bundle: Path | None = None
    #: A JSON Web Key Set file of signing keys (Distribution's ``jwks``).
    jwks: Path | None = None
    allowed_algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256"])
    #: Seconds of clock difference tolerated on ``exp`` and ``nbf`` (Distribution: 60).
    clock_skew_tolerance: int = 60

    def __post_init__(self) -> None:
        # Keys are checked here without knowing the entry's name: the message says which
        # key; parse_table adds the entry's path in front of any ValueError.
        errors: list[str] = []
        try:
            check_realm(self.realm, "realm")
        except ConfigError as exc:
            errors.append(str(exc))
        if not self.service or not self.service.isprintable() or '"' in self.service:
            errors.append(f"service: must be a non-empty printable name, got {self.service!r}")
        if not self.issuer:
            errors.append("issuer: must be the iss of the token server's tokens")
        if self.root_certificate_bundle is None and self.jwks is None:
            errors.append(
                "set root_certificate_bundle (the PEM certificate of the token server's "
                "signing key) or jwks (a JWKS file of its keys)"
            )
        refused = [a for a in self.allowed_algorithms if a not in ASYMMETRIC]
        if refused or not self.allowed_algorithms:
            errors.append(
                f"allowed_algorithms: {refused or 'empty'}: choose among {', '.join(ASYMMETRIC)}"
            )
        if self.clock_skew_tolerance < 0:
            errors.append(
                f"clock_skew_tolerance: cannot be negative, got {self.clock_skew_tolerance}"
            )
        if errors:
            raise ValueError("; ".join(errors))


@dataclass
class _Issuer:
    entry: str
    config: ExternalTokenConfig
    keys: TrustedKeys = field(default_factory=TrustedKeys)


class ExternalTokens:
    """Every ``[auth.token.<name>]`` entry as one authenticator and token issuer."""

    order = ORDER_EXTERNAL_TOKEN

    def __init__(
        self,
        entries: Mapping[str, ExternalTokenConfig],
        *,
        name: str = "token",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not entries:
            raise ConfigError(SECTION, "no entry configured; add [auth.token.<name>] tables")
        self.name = name
        self._clock = clock
        errors: list[ConfigError] = []
        self._by_issuer: dict[str, _Issuer] = {}
        for entry, config in entries.items():
            seen = self._by_issuer.get(config.issuer)
            if seen is not None:
                errors.append(
                    ConfigError(
                        f"{SECTION}.{entry}.issuer",
                        f"{config.issuer!r} is the issuer of [{SECTION}.{seen.entry}] too; one "
                        "entry per token server",
                    )
                )
                continue
            self._by_issuer[config.issuer] = _Issuer(entry, config)
        ConfigErrors.raise_if_any(errors)
        first = next(iter(entries.values()))
        #: Where the challenge sends clients: the first entry's token server.
        self.realm = first.realm
        self.service = first.service

    def __repr__(self) -> str:
        return f"ExternalTokens(entries={[i.entry for i in self._by_issuer.values()]!r})"

    def challenge(self, needed: Sequence[Access]) -> str:
        return bearer_challenge(self.realm, self.service, needed)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Read every entry's certificates and keys; a missing or malformed file is a
        ConfigError naming the key."""
        errors: list[ConfigError] = []
        for issuer in self._by_issuer.values():
            keys = TrustedKeys()
            config, path = issuer.config, f"{SECTION}.{issuer.entry}"
            for key, file, load in (
                (
                    "root_certificate_bundle",
                    config.root_certificate_bundle,
                    load_certificate_bundle,
                ),
                ("jwks", config.jwks, load_jwks_file),
            ):
                if file is None:
                    continue
                try:
                    if not load(file, keys):
                        raise ValueError("it holds no key")
                except OSError as exc:
                    errors.append(
                        ConfigError(f"{path}.{key}", f"cannot read {str(file)!r}: {exc.strerror}")
                    )
                except ValueError as exc:
                    errors.append(
                        ConfigError(
                            f"{path}.{key}",
                            f"{str(file)!r} is unusable: {exc}; "
                            + (
                                "give the PEM certificate(s) of the token server's signing key"
                                if key == "root_certificate_bundle"
                                else "give a JSON Web Key Set whose keys have a kid"
                            ),
                        )
                    )
            issuer.keys = keys
        ConfigErrors.raise_if_any(errors)

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------------ Authenticator

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        token = credentials.bearer
        if token is None:
            return None
        # Routed by its unverified issuer without PyJWT (claims.peek: every Bearer token
        # passes here); PyJWT verifies it fully in _verify once it names one of ours.
        peeked = peek(token)
        if peeked is None:
            return None
        header, claimed = peeked
        claimed_issuer = claimed.get("iss")
        issuer = self._by_issuer.get(claimed_issuer) if isinstance(claimed_issuer, str) else None
        if issuer is None:
            return None
        payload = self._verify(issuer, token, header)
        try:
            access = parse_access(payload.get("access"))
        except AccessClaimInvalid:
            raise AuthenticationFailed(self.name, "invalid token: malformed access claim") from None
        subject = payload.get("sub")
        subject = subject if isinstance(subject, str) else ""
        return Identity(
            id=subject,
            username=subject,
            provider=f"{self.name}.{issuer.entry}",
            method="bearer",
            claims=payload,
            access=access,
        )

    def _verify(self, issuer: _Issuer, token: str, header: dict[str, Any]) -> dict[str, Any]:
        config = issuer.config
        algorithm = header.get("alg")
        if algorithm not in config.allowed_algorithms:
            raise AuthenticationFailed(self.name, "invalid token: signing algorithm not allowed")
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        try:
            candidates = issuer.keys.candidates(header, now)
        except UntrustedKey as exc:
            raise AuthenticationFailed(self.name, f"invalid token: {exc}") from None
        failure: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=config.service,
                    issuer=config.issuer,
                    options=decode_options("iss", "aud", "exp"),
                )
            except jwt.InvalidSignatureError as exc:
                failure = exc
                continue
            except (jwt.InvalidKeyError, TypeError, ValueError) as exc:
                # A key of another type than the algorithm (an EC key for RS256).
                failure = jwt.InvalidKeyError(str(exc))
                continue
            except jwt.InvalidAudienceError:
                raise AuthenticationFailed(
                    self.name, "the token was issued for another service"
                ) from None
            except jwt.PyJWTError:
                raise AuthenticationFailed(self.name, "invalid token") from None
            problem = lifetime_problem(payload, self._clock(), config.clock_skew_tolerance)
            if problem:
                raise AuthenticationFailed(self.name, f"the token {problem}")
            return payload
        log.debug("token from %s: no trusted key verifies it (%r)", issuer.entry, failure)
        raise AuthenticationFailed(self.name, "invalid token: bad signature")
