"""``[auth.oidc.<name>]``: one trusted OIDC issuer per entry.

Key names follow Angos in Rust (``issuer``, ``jwks_uri``, ``required_audience``,
``clock_skew_tolerance``, ``jwks_refresh_interval``, ``allowed_algorithms``, ``provider``),
so an Angos config carries over. ``required_claims`` lists claims a token must carry, as
the Rust ``github`` provider requires ``repository`` and ``actor``; what their values must be
is an access-policy decision, not an authentication one.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from angos_core.auth.tokens import ASYMMETRIC_ALGORITHMS

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_JWKS_URI = f"{GITHUB_ISSUER}/.well-known/jwks"
#: What the Rust ``github`` provider checks every GitHub Actions token carries.
GITHUB_REQUIRED_CLAIMS = ("repository", "actor")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(key: str, url: str) -> None:
    """``url`` is absolute https (http only to a loopback host: keys fetched in the clear
    from elsewhere could be swapped on the way), without query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            f"{key} must be an absolute https URL such as https://issuer.example.com, got {url!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{key} must use https (http is accepted for a loopback host only), got {url!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{key} cannot have a query or fragment, got {url!r}")


@dataclass
class OidcConfig:
    """One ``[auth.oidc.<name>]`` entry."""

    #: ``generic`` (any OIDC issuer) or ``github`` (GitHub Actions: issuer and JWKS URI
    #: default to GitHub's, ``repository`` and ``actor`` claims required), as in Rust Angos.
    provider: Literal["generic", "github"] = "generic"
    #: The token's ``iss`` must equal it exactly (trailing slash included).
    issuer: str = ""
    #: Where the signing keys are; unset: OpenID discovery at
    #: ``<issuer>/.well-known/openid-configuration``.
    jwks_uri: str = ""
    #: The token's ``aud`` must contain this (or one of these). Unset: any audience.
    required_audience: str | list[str] | None = None
    #: Claims every accepted token must carry (any value).
    required_claims: list[str] = field(default_factory=list)
    #: Algorithms a token may be signed with; asymmetric ones only.
    allowed_algorithms: list[str] = field(default_factory=lambda: ["RS256"])
    #: Seconds of leeway on ``exp``, ``nbf`` and ``iat``, for clocks that differ.
    clock_skew_tolerance: float = 60.0
    #: Seconds a fetched JWKS is used before it is fetched again (and its ttl in the cache).
    jwks_refresh_interval: float = 3600.0
    #: Least seconds between two unscheduled fetches (a token with an unknown ``kid``, or
    #: retrying an unreachable issuer): a flood of bad tokens cannot flood the issuer.
    jwks_min_refresh_interval: float = 30.0
    #: Timeout of one request to the issuer (discovery or JWKS).
    http_request_timeout_secs: float = 5.0
    #: PEM bundle of CAs the issuer's TLS certificate chains to (a private issuer, a
    #: cluster's API server); unset: the system's trust store.
    ca_bundle: str = ""
    #: The claim that becomes the identity's username (``sub`` unless set).
    username_claim: str = "sub"

    def __post_init__(self) -> None:
        if self.provider == "github":
            self.issuer = self.issuer or GITHUB_ISSUER
            self.jwks_uri = self.jwks_uri or GITHUB_JWKS_URI
            self.required_claims = list(
                dict.fromkeys([*GITHUB_REQUIRED_CLAIMS, *self.required_claims])
            )
        if not self.issuer:
            raise ValueError(
                "issuer is required: the issuer URL the tokens' iss claim carries, such as "
                "https://token.actions.githubusercontent.com"
            )
        check_url("issuer", self.issuer)
        if self.jwks_uri:
            check_url("jwks_uri", self.jwks_uri)
        if isinstance(self.required_audience, list) and not self.required_audience:
            raise ValueError("required_audience cannot be an empty list; remove the key instead")
        if not self.allowed_algorithms:
            raise ValueError('allowed_algorithms cannot be empty; use ["RS256"] (the default)')
        for alg in self.allowed_algorithms:
            if alg in ASYMMETRIC_ALGORITHMS:
                continue
            if alg.lower() == "none":
                why = "'none' means unsigned tokens, which anyone can forge"
            elif alg.upper().startswith("HS"):
                why = (
                    f"{alg!r} is a shared-secret HMAC: verified with the issuer's public key, "
                    "anyone could sign"
                )
            else:
                why = f"{alg!r} is not a JWS signature algorithm"
            raise ValueError(
                f"allowed_algorithms: {why}; use asymmetric ones: "
                f"{', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        for name, value in (
            ("clock_skew_tolerance", self.clock_skew_tolerance),
            ("jwks_min_refresh_interval", self.jwks_min_refresh_interval),
        ):
            if value < 0:
                raise ValueError(f"{name} cannot be negative, got {value}")
        for name, value in (
            ("jwks_refresh_interval", self.jwks_refresh_interval),
            ("http_request_timeout_secs", self.http_request_timeout_secs),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if self.ca_bundle:
            if not Path(self.ca_bundle).is_file():
                raise ValueError(
                    f"ca_bundle: no file {self.ca_bundle!r}; give the path of a PEM CA bundle, "
                    "or remove the key to use the system's trust store"
                )
            try:
                ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ca_bundle: {self.ca_bundle!r} is not a PEM CA bundle ({exc}); give the CA "
                    "certificates the issuer's TLS certificate chains to"
                ) from None
        if not self.username_claim:
            raise ValueError('username_claim cannot be empty; use "sub" (the default)')

    @property
    def audiences(self) -> list[str] | None:
        if self.required_audience is None:
            return None
        if isinstance(self.required_audience, str):
            return [self.required_audience]
        return list(self.required_audience)
