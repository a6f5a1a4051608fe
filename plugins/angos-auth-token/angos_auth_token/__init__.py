"""Angos token authentication: the registry's token service (authenticator
``token_service``) and trusted external token servers (authenticator ``token``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_auth_token.config import ExternalTokenConfig, TokenServiceConfig
from angos_core.lazy import lazy_exports

if TYPE_CHECKING:
    from angos_auth_token.external import ExternalTokens
    from angos_auth_token.service import TokenService

__all__ = ["ExternalTokenConfig", "ExternalTokens", "TokenService", "TokenServiceConfig"]

# Loaded on first use, so that finding the plugin imports neither PyJWT nor cryptography.
__getattr__ = lazy_exports(
    __name__,
    {
        "ExternalTokens": "angos_auth_token.external",
        "TokenService": "angos_auth_token.service",
    },
)
