"""Angos token authentication: the registry's token service (authenticator
``token_service``) and trusted external token servers (authenticator ``token``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from angos_auth_token.config import ExternalTokenConfig, TokenServiceConfig

if TYPE_CHECKING:
    from angos_auth_token.external import ExternalTokens
    from angos_auth_token.service import TokenService

__all__ = ["ExternalTokenConfig", "ExternalTokens", "TokenService", "TokenServiceConfig"]

# Loaded on first use, so that finding the plugin imports neither PyJWT nor cryptography.
_LAZY = {
    "ExternalTokens": "angos_auth_token.external",
    "TokenService": "angos_auth_token.service",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'angos_auth_token' has no attribute {name!r}")
