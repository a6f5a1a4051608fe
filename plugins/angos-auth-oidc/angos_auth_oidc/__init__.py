"""Angos plugin ``angos-auth-oidc``: authenticator ``oidc`` (``[auth.oidc.<entry>]``).

Keyless CI and workload tokens (GitHub Actions, GitLab, Kubernetes service accounts) verified
against their issuer's JWKS. ``angos_auth_oidc.jwt_verify`` verifies any issuer-signed JWT
against a JWKS and is usable on its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from angos_auth_oidc.config import OidcConfig

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
_LAZY = {
    "OidcAuthenticator": "angos_auth_oidc.authenticator",
    "OidcEntry": "angos_auth_oidc.authenticator",
    "JwksSource": "angos_auth_oidc.jwks",
    "KeySet": "angos_auth_oidc.jwt_verify",
    "TokenRejected": "angos_auth_oidc.jwt_verify",
    "UnverifiedToken": "angos_auth_oidc.jwt_verify",
    "peek": "angos_auth_oidc.jwt_verify",
    "verify": "angos_auth_oidc.jwt_verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'angos_auth_oidc' has no attribute {name!r}")
