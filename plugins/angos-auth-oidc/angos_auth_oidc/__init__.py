"""Angos plugin ``angos-auth-oidc``: authenticator ``oidc`` (``[auth.oidc.<entry>]``).

Keyless CI and workload tokens (GitHub Actions, GitLab, Kubernetes service accounts) verified
against their issuer's JWKS. ``angos_auth_oidc.jwt_verify`` verifies any issuer-signed JWT
against a JWKS and is usable on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_auth_oidc.config import OidcConfig
from angos_core.lazy import lazy_exports

if TYPE_CHECKING:
    from angos_auth_oidc.authenticator import OidcAuthenticator, OidcEntry
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

# Loaded on first use, so that finding the plugin imports neither PyJWT nor cryptography.
__getattr__ = lazy_exports(
    __name__,
    {
        "OidcAuthenticator": "angos_auth_oidc.authenticator",
        "OidcEntry": "angos_auth_oidc.authenticator",
        "JwksSource": "angos_auth_oidc.jwks",
        "KeySet": "angos_auth_oidc.jwt_verify",
        "TokenRejected": "angos_auth_oidc.jwt_verify",
        "UnverifiedToken": "angos_auth_oidc.jwt_verify",
        "peek": "angos_auth_oidc.jwt_verify",
        "verify": "angos_auth_oidc.jwt_verify",
    },
)
