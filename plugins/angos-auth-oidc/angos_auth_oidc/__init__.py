"""Angos OIDC / JWT authenticator (``[auth.oidc.<entry>]``): keyless CI and workload tokens
(GitHub Actions, GitLab, Kubernetes service accounts) verified against their issuer's JWKS."""

from angos_auth_oidc.authenticator import OidcAuthenticator, OidcEntry
from angos_auth_oidc.config import OidcConfig
from angos_auth_oidc.jwks import JwksSource
from angos_auth_oidc.jwt_verify import KeySet, TokenRejected, UnverifiedToken, peek, verify

__all__ = [
    "JwksSource",
    "KeySet",
    "OidcAuthenticator",
    "OidcConfig",
    "OidcEntry",
    "TokenRejected",
    "UnverifiedToken",
    "peek",
    "verify",
]
