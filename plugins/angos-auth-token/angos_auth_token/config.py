"""The configuration of ``angos-auth-token``: ``[auth.token_service]`` and
``[auth.token.<name>]``, checked when the config loads. Apart from the authenticators so
that finding the plugin (and a registry that configures neither) imports neither PyJWT nor
cryptography."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from angos_core.auth.tokens import ASYMMETRIC_ALGORITHMS, TOKEN_PATH
from angos_core.errors import ConfigError, ConfigErrors

SERVICE_SECTION = "auth.token_service"

#: Shortest key accepted, in decoded bytes: HS256's output size (RFC 7518 3.2). Tokens are
#: handed to CI jobs and logged by careless tools; a short key is guessed offline.
MIN_SECRET_BYTES = 32
#: Longest access token lifetime: a token cannot be revoked before it expires.
MAX_TTL_SECS = 86400
MAX_REFRESH_TTL_SECS = 365 * 86400


def decode_secret(value: str) -> bytes:
    """The bytes of a base64 ``secret_key`` (standard or URL-safe alphabet)."""
    text = "".join(value.split())
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(text, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise ValueError("not base64")


def check_realm(realm: str, key: str) -> str:
    """``realm`` if it is an absolute http(s) URL a client can fetch (no credentials, query
    or fragment), else a ConfigError naming ``key``."""
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            key,
            f"must be an absolute http or https URL such as https://registry.example.com"
            f"{TOKEN_PATH}, got {realm!r}",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(
            key, "must not hold credentials, a query or a fragment: every client receives it"
        )
    return realm


@dataclass
class TokenServiceConfig:
    """``[auth.token_service]``."""

    #: Base64 HMAC key, at least 32 bytes decoded (``openssl rand -base64 32``).
    secret_key: str = field(repr=False)
    #: The token endpoint's URL as clients reach it; empty: ``<scheme>://<host>/token`` of
    #: each request (a registry reachable under several names).
    realm: str = ""
    #: The service tokens are issued for (their ``aud``; the challenge's ``service``).
    service: str = "angos"
    #: Access token lifetime.
    ttl_secs: int = 300
    #: Refresh token lifetime (``access_type=offline``, ``docker login``); 0: none issued.
    refresh_ttl_secs: int = 30 * 86400

    def __post_init__(self) -> None:
        errors: list[ConfigError] = []
        try:
            key = decode_secret(self.secret_key)
        except ValueError:
            errors.append(
                ConfigError(
                    f"{SERVICE_SECTION}.secret_key",
                    "is not base64; make one with: openssl rand -base64 32",
                )
            )
        else:
            if len(key) < MIN_SECRET_BYTES:
                errors.append(
                    ConfigError(
                        f"{SERVICE_SECTION}.secret_key",
                        f"decodes to {len(key)} bytes, at least {MIN_SECRET_BYTES} are needed; "
                        "make one with: openssl rand -base64 32",
                    )
                )
        if self.realm:
            try:
                check_realm(self.realm, f"{SERVICE_SECTION}.realm")
                if not urlsplit(self.realm).path.endswith(TOKEN_PATH):
                    raise ConfigError(
                        f"{SERVICE_SECTION}.realm",
                        f"its path must end with {TOKEN_PATH} (where Angos serves tokens; a "
                        f"prefix a proxy strips may come before), got {self.realm!r}",
                    )
            except ConfigError as exc:
                errors.append(exc)
        if not self.service or not self.service.isprintable() or '"' in self.service:
            errors.append(
                ConfigError(
                    f"{SERVICE_SECTION}.service",
                    f"must be a non-empty printable name without quotes, got {self.service!r}",
                )
            )
        if not 1 <= self.ttl_secs <= MAX_TTL_SECS:
            errors.append(
                ConfigError(
                    f"{SERVICE_SECTION}.ttl_secs",
                    f"must be between 1 and {MAX_TTL_SECS} seconds, got {self.ttl_secs}",
                )
            )
        if not 0 <= self.refresh_ttl_secs <= MAX_REFRESH_TTL_SECS:
            errors.append(
                ConfigError(
                    f"{SERVICE_SECTION}.refresh_ttl_secs",
                    f"must be between 0 (no refresh tokens) and {MAX_REFRESH_TTL_SECS} "
                    f"seconds, got {self.refresh_ttl_secs}",
                )
            )
        ConfigErrors.raise_if_any(errors)


EXTERNAL_SECTION = "auth.token"


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
        refused = [a for a in self.allowed_algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not self.allowed_algorithms:
            errors.append(
                f"allowed_algorithms: {refused or 'empty'}: choose among "
                + ", ".join(ASYMMETRIC_ALGORITHMS)
            )
        if self.clock_skew_tolerance < 0:
            errors.append(
                f"clock_skew_tolerance: cannot be negative, got {self.clock_skew_tolerance}"
            )
        if errors:
            raise ValueError("; ".join(errors))
