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
from typing import Any

import jwt

from angos_auth_token.claims import (
    AccessClaimInvalid,
    decode_options,
    lifetime_problem,
    parse_access,
    peek,
)
from angos_auth_token.config import EXTERNAL_SECTION as SECTION
from angos_auth_token.config import ExternalTokenConfig
from angos_auth_token.keys import (
    TrustedKeys,
    UntrustedKey,
    load_certificate_bundle,
    load_jwks_file,
)
from angos_core.auth.issuer import bearer_challenge
from angos_core.errors import AuthenticationFailed, ConfigError, ConfigErrors
from angos_core.identity import ORDER_EXTERNAL_TOKEN, Access, Credentials, Identity

log = logging.getLogger("angos.auth.token")


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
